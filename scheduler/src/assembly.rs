//! An inference round's maths: each shard's outputs (checked on arrival)
//! compared with its replicas', then put together in row order and scored
//! against the rows' labels. Pure, like [`crate::round`], whose judging of
//! replicas it shares.

use oblivion_ml::MlError;
use oblivion_ml::data::Dataset;
use oblivion_ml::inference::Outputs;
use oblivion_ml::screening::Verdict;

use crate::round::{Judged, RoundBlob, judge_shards};

/// What assembling an inference round came to.
#[derive(Debug)]
pub enum Assembly {
    /// These shards' results disagree (two, or three or more of which no
    /// two agree): another result must decide.
    NeedsThird(Vec<u32>),
    /// Every row's outputs, in row order; a verdict per result, in the
    /// order given; and how the predictions fared against the labels.
    Assembled(Outputs, Vec<Verdict>, Score),
}

/// How an inference job's predictions fared against its rows' labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    /// The share of rows whose predicted class is their label.
    pub accuracy: f64,
    /// Mean cross-entropy of the labels under the probabilities.
    pub loss: f64,
    /// `confusion[label][predicted]`: rows counted.
    pub confusion: Vec<Vec<u64>>,
}

/// Assembles a complete inference round: `updates` are its results (in
/// acceptance order, replicas of a shard named by their `base`),
/// `shard_rows` the rows of each shard in order, `tolerance` how far two
/// results' probabilities may differ and still agree, and `rows` every row
/// of the job with its label.
pub fn assemble_outputs(
    updates: &[RoundBlob],
    shard_rows: &[u64],
    tolerance: f64,
    rows: &Dataset,
    classes: usize,
) -> Result<Assembly, MlError> {
    let mut decoded = Vec::with_capacity(updates.len());
    for u in updates {
        let n = shard_rows
            .get(u.base as usize)
            .copied()
            .ok_or_else(|| MlError::Update(format!("no shard {}", u.base)))?;
        decoded.push(Outputs::decode(&u.bytes, n as usize, classes, tolerance)?);
    }
    let Judged {
        verdicts,
        mut standing,
        mut undecided,
    } = judge_shards(updates, |i, j| {
        decoded[i].max_difference(&decoded[j]) <= tolerance
    });
    // A shard none of whose results stands (no two of three or more agree)
    // needs another too: its rows must be answered.
    for base in 0..shard_rows.len() as u32 {
        let stands = standing.iter().any(|&(i, _)| updates[i].base == base);
        if !stands && !undecided.contains(&base) {
            undecided.push(base);
        }
    }
    if !undecided.is_empty() {
        undecided.sort_unstable();
        return Ok(Assembly::NeedsThird(undecided));
    }
    standing.sort_by_key(|&(i, _)| updates[i].base);
    let mut verdicts: Vec<Verdict> = verdicts
        .into_iter()
        .map(|v| v.unwrap_or(Verdict::Verified))
        .collect();
    let mut outputs = Outputs {
        classes,
        probabilities: Vec::with_capacity(rows.len() * classes),
        predicted: Vec::with_capacity(rows.len()),
    };
    for (representative, twins) in &standing {
        outputs.append(&decoded[*representative]);
        for &i in std::iter::once(representative).chain(twins) {
            verdicts[i] = Verdict::Verified;
        }
    }
    if outputs.rows() != rows.len() {
        return Err(MlError::Update(format!(
            "the shards hold {} rows; the job has {}",
            outputs.rows(),
            rows.len()
        )));
    }
    let score = score(&outputs, &rows.labels);
    Ok(Assembly::Assembled(outputs, verdicts, score))
}

/// The predictions' accuracy, loss and confusion against `labels`.
pub fn score(outputs: &Outputs, labels: &[u32]) -> Score {
    let classes = outputs.classes;
    let mut confusion = vec![vec![0u64; classes]; classes];
    let (mut correct, mut loss) = (0u64, 0f64);
    for (i, &label) in labels.iter().enumerate() {
        let predicted = outputs.predicted[i] as usize;
        if let Some(row) = confusion.get_mut(label as usize) {
            row[predicted] += 1;
        }
        correct += u64::from(predicted == label as usize);
        let p = outputs.row(i).get(label as usize).copied().unwrap_or(0.0);
        loss -= f64::from(p).max(1e-12).ln();
    }
    let n = labels.len().max(1) as f64;
    Score {
        accuracy: correct as f64 / n,
        loss: loss / n,
        confusion,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(base: u32, logits: &[f32], refuter: Option<&str>) -> RoundBlob {
        RoundBlob {
            bytes: Outputs::from_logits(logits, 2).to_compressed(),
            samples: (logits.len() / 2) as f64,
            base,
            refuter: refuter.map(str::to_string),
        }
    }

    fn rows(labels: Vec<u32>) -> Dataset {
        Dataset {
            shape: vec![1],
            features: vec![0.0; labels.len()],
            labels,
            classes: 2,
        }
    }

    #[test]
    fn shards_are_put_in_row_order_and_scored() {
        // Accepted out of order: shard 1 first.
        let updates = [
            blob(1, &[0.0, 3.0], None),
            blob(0, &[2.0, 0.0, 0.0, 1.0], None),
        ];
        let Assembly::Assembled(outputs, verdicts, score) =
            assemble_outputs(&updates, &[2, 1], 1e-3, &rows(vec![0, 0, 1]), 2).unwrap()
        else {
            panic!("assembled");
        };
        assert_eq!(outputs.predicted, vec![0, 1, 1]);
        assert!(verdicts.iter().all(Verdict::is_verified));
        assert!((score.accuracy - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(score.confusion, vec![vec![1, 1], vec![0, 1]]);
    }

    #[test]
    fn replicas_that_disagree_ask_a_third_and_the_majority_stands() {
        let honest = [2.0, 0.0];
        let liar = [0.0, 2.0];
        let two = [blob(0, &honest, Some("a")), blob(0, &liar, Some("b"))];
        let rows = rows(vec![0]);
        assert!(matches!(
            assemble_outputs(&two, &[1], 1e-3, &rows, 2).unwrap(),
            Assembly::NeedsThird(bases) if bases == vec![0]
        ));
        let three = [
            blob(0, &honest, Some("a")),
            blob(0, &liar, Some("b")),
            blob(0, &honest, Some("c")),
        ];
        let Assembly::Assembled(outputs, verdicts, _) =
            assemble_outputs(&three, &[1], 1e-3, &rows, 2).unwrap()
        else {
            panic!("assembled");
        };
        assert_eq!(outputs.predicted, vec![0]);
        assert!(verdicts[0].is_verified() && verdicts[2].is_verified());
        assert!(matches!(verdicts[1], Verdict::Refuted(_)), "{verdicts:?}");
    }
}
