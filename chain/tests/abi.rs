//! The committed ABI copy (`abi/OblivionEscrow.json`) matches the contract
//! as last built by `forge build`.

use std::path::Path;

use serde_json::Value;

fn load(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

#[test]
fn abi_is_fresh() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let committed = load(&dir.join("abi/OblivionEscrow.json"));
    assert!(committed["abi"].is_array(), "the copy has no abi");
    assert!(
        committed["bytecode"]["object"].is_string(),
        "the copy has no bytecode"
    );
    let built = dir.join("../contracts/out/OblivionEscrow.sol/OblivionEscrow.json");
    if !built.exists() {
        eprintln!(
            "abi_is_fresh: {} not found (run forge build in contracts/); nothing to compare",
            built.display()
        );
        return;
    }
    let built = load(&built);
    let stale = "chain/abi/OblivionEscrow.json is stale: refresh it from contracts/out \
                 (see chain/README.md)";
    assert_eq!(committed["abi"], built["abi"], "{stale}");
    assert_eq!(
        committed["bytecode"]["object"], built["bytecode"]["object"],
        "{stale}"
    );
}
