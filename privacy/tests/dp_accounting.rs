//! Checks the accountant against Google's Python `dp-accounting` package
//! (pinned in tests/python/requirements.txt) over a grid of sampling rates,
//! noise multipliers and step counts.
//!
//! The Python interpreter is `$OBLIVION_PYTHON` (the project's test venv),
//! else `python3`. A missing interpreter or package fails the test: the
//! comparison is the point of it.

use std::io::Write;
use std::process::{Command, Stdio};

use oblivion_privacy::RdpAccountant;
use serde_json::{Value, json};

/// Largest relative difference in ε tolerated.
const TOLERANCE: f64 = 0.01;

/// Exit status the script uses when `dp_accounting` cannot be imported (the
/// `sys.exit(3)` in [`SCRIPT`]).
const MISSING_MODULE: i32 = 3;

/// Reads the cases as JSON from its first argument and prints, for each, ε
/// and the optimal order from dp_accounting's `RdpAccountant`.
const SCRIPT: &str = r#"
import json, sys
try:
    import dp_accounting as dpa
    from dp_accounting import rdp
except ImportError as e:
    print(e, file=sys.stderr)
    sys.exit(3)
out = []
for q, sigma, steps, delta in json.loads(sys.argv[1]):
    acc = rdp.RdpAccountant()
    acc.compose(dpa.SelfComposedDpEvent(
        dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(sigma)), steps))
    eps, order = acc.get_epsilon_and_optimal_order(delta)
    # json would write inf as Infinity, which is not JSON.
    out.append([float(eps) if eps != float("inf") else None, float(order)])
print(json.dumps(out))
"#;

/// (sampling rate, noise multiplier, steps, δ).
type Case = (f64, f64, u64, f64);

fn grid() -> Vec<Case> {
    let mut cases = Vec::new();
    for q in [0.001, 0.01, 0.1, 0.5, 1.0] {
        for sigma in [0.5, 0.8, 1.0, 2.0, 5.0] {
            for steps in [1, 10, 100, 1000] {
                cases.push((q, sigma, steps, 1e-5));
            }
        }
    }
    // A looser δ at a few points.
    for q in [0.01, 0.1, 1.0] {
        for sigma in [0.8, 2.0] {
            for steps in [10, 1000] {
                cases.push((q, sigma, steps, 1e-3));
            }
        }
    }
    cases
}

/// ε and the optimal order from dp_accounting for each case, in one run of
/// the interpreter.
fn reference(cases: &[Case]) -> Vec<(Option<f64>, f64)> {
    let python = std::env::var("OBLIVION_PYTHON").unwrap_or_else(|_| "python3".into());
    let install = format!(
        "install the test requirements: {python} -m pip install -r tests/python/requirements.txt \
         (or point OBLIVION_PYTHON at the project's test venv)"
    );
    let arg = json!(cases).to_string();
    let mut child = Command::new(&python)
        .args(["-", &arg])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run Python `{python}`: {e}; {install}"));
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(SCRIPT.as_bytes())
        .expect("writing the script to Python");
    let out = child.wait_with_output().expect("waiting for Python");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(MISSING_MODULE) {
        panic!(
            "dp_accounting is not importable by `{python}` ({}); {install}",
            stderr.trim()
        );
    }
    assert!(out.status.success(), "`{python}` failed: {stderr}");
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "unreadable output from dp_accounting ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    rows.iter()
        .map(|row| (row[0].as_f64(), row[1].as_f64().expect("order is a number")))
        .collect()
}

#[test]
fn epsilon_matches_dp_accounting() {
    let cases = grid();
    let want = reference(&cases);
    assert_eq!(want.len(), cases.len(), "one answer per case");

    let mut worst = (0.0, cases[0]);
    let mut failures = Vec::new();
    let mut order_differs = 0;
    for (&case, &(python_eps, python_order)) in cases.iter().zip(&want) {
        let (q, sigma, steps, delta) = case;
        let mut accountant = RdpAccountant::new();
        accountant
            .compose_poisson_gaussian(q, sigma, steps)
            .expect("grid inputs are valid");
        let got = accountant.epsilon(delta).expect("grid δ is valid");
        let Some(python_eps) = python_eps else {
            failures.push(format!(
                "{case:?}: dp_accounting gave ε = ∞, ours {}",
                got.epsilon
            ));
            continue;
        };
        let rel = if python_eps == 0.0 {
            // Both sides give exactly zero when the KL bound applies.
            if got.epsilon == 0.0 {
                0.0
            } else {
                f64::INFINITY
            }
        } else {
            (got.epsilon - python_eps).abs() / python_eps
        };
        if rel > worst.0 {
            worst = (rel, case);
        }
        if rel > TOLERANCE {
            failures.push(format!(
                "{case:?}: ε = {} here, {python_eps} in dp_accounting (relative error {rel:.3e})",
                got.epsilon
            ));
        }
        if got.order != python_order {
            order_differs += 1;
        }
    }
    println!(
        "{} cases; worst relative error in ε {:.3e} at (q, σ, steps, δ) = {:?}; \
         optimal order differs in {order_differs}",
        cases.len(),
        worst.0,
        worst.1
    );
    assert!(
        failures.is_empty(),
        "ε differs from dp_accounting by more than {TOLERANCE}:\n{}",
        failures.join("\n")
    );
}
