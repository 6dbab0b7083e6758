//! The settings' layers, defaults, names and table.

use super::*;

#[test]
fn layers_apply_in_order_and_are_checked() {
    let dir = std::env::temp_dir().join(format!("oblivion-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("c.toml");
    std::fs::write(
        &file,
        "lease_cap = 5\nheartbeat_secs = 2\nlease_ttl_secs = 6\ntrusted_proxies = \
         [\"10.0.0.1\", \"10.0.0.2\"]\n",
    )
    .unwrap();
    // Flags over the file, the file over the defaults.
    let c = Config::from_flags(Some(&file), &["--lease-cap", "3"]).unwrap();
    assert_eq!(
        (
            c.leases.lease_cap,
            c.leases.heartbeat.as_secs(),
            c.leases.lease_ttl.as_secs()
        ),
        (3, 2, 6)
    );
    assert_eq!(c.quotas.trusted_proxies.len(), 2);
    assert_eq!(
        c.collection.keep_rounds,
        Config::default().collection.keep_rounds
    );
    // An unknown key, or a value its setting refuses, names the key.
    std::fs::write(&file, "lease_cap = 5\nbogus = 1\n").unwrap();
    let e = Config::from_flags(Some(&file), &[]).unwrap_err();
    assert!(e.contains("bogus") && e.contains("no such setting"), "{e}");
    std::fs::write(&file, "lease_ttl_secs = \"soon\"\n").unwrap();
    let e = Config::from_flags(Some(&file), &[]).unwrap_err();
    assert!(e.contains("lease_ttl_secs") && e.contains("soon"), "{e}");
    std::fs::write(&file, "config = \"other.toml\"\n").unwrap();
    assert!(Config::from_flags(Some(&file), &[]).is_err());
    // The settings are checked together, whichever layer gave them.
    let e = Config::from_flags(None, &["--lease-ttl-secs", "1"]).unwrap_err();
    assert!(e.contains("lease_ttl_secs"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn defaults_are_the_domains_own() {
    let c = Config::default();
    assert_eq!(c.reputation(), ReputationPolicy::default());
    assert_eq!(c.collection.gc_grace, oblivion_store::COLLECTION_GRACE);
    assert_eq!(
        c.uploads.max_update_bytes,
        oblivion_protocol::wire::MAX_UPDATE_BYTES
    );
    assert!(matches!(c.chain(), Ok(None)));
    assert!(c.check().is_ok());
}

#[test]
fn every_setting_has_its_own_flag_key_and_variable() {
    let cmd = with_env(Config::augment_args(Command::new("serve")));
    cmd.clone().debug_assert();
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        assert_eq!(arg.get_long(), Some(id.replace('_', "-").as_str()));
        assert_eq!(
            arg.get_env().map(|e| e.to_string_lossy().into_owned()),
            Some(env_name(id))
        );
        assert!(arg.get_help().is_some(), "{id} has no help");
    }
}

/// `README.md` lists every setting as declared here: a setting added,
/// renamed or given a new default changes the table, and this test
/// prints the new one to paste between the markers.
#[test]
fn the_readme_lists_the_settings_as_declared() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let (begin, end) = ("<!-- settings: begin -->\n", "<!-- settings: end -->");
    let start = readme
        .find(begin)
        .expect("README.md has the settings markers")
        + begin.len();
    let stop = readme[start..]
        .find(end)
        .expect("README.md closes the settings markers");
    let expected = settings_table();
    assert!(
        readme[start..start + stop] == expected,
        "README.md's settings table differs from the declaration; it should read:\n{expected}"
    );
}

#[test]
fn only_local_addresses_are_trusted_as_the_sign_in_domain() {
    let local = Config::default();
    for ok in [
        "127.0.0.1:8080",
        "localhost:8080",
        "LOCALHOST:8080",
        "[::1]:8080",
    ] {
        assert!(local.serves_at(ok), "{ok}");
    }
    for bad in [
        "evil.example",
        "evil.example:8080",
        "127.0.0.1:9999",
        "127.0.0.1",
        "localhost.evil.example:8080",
        "10.0.0.5:8080",
        "127.0.0.1:8080:8080",
        "",
    ] {
        assert!(!local.serves_at(bad), "{bad}");
    }
    let lan = Config {
        listen: "10.0.0.5:8080".parse().unwrap(),
        ..Config::default()
    };
    assert!(lan.serves_at("10.0.0.5:8080"));
    assert!(!lan.serves_at("10.0.0.6:8080"));
    let v6 = Config {
        listen: "[fd00::5]:80".parse().unwrap(),
        ..Config::default()
    };
    assert!(v6.serves_at("[fd00::5]"));
    assert!(v6.serves_at("[FD00::5]:80"));

    // Every interface, without a public URL: which name is ours? Refused.
    let any = ["--listen", "0.0.0.0:8080"];
    assert!(
        Config::from_flags(None, &any)
            .unwrap_err()
            .contains("public_url")
    );
    let named = [&any[..], &["--public-url", "https://oblivion.example"]].concat();
    assert!(Config::from_flags(None, &named).is_ok());
}
