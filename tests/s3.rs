//! S3-compatible storage: the real store these tests run against. Later tests
//! (the S3 backend, the offsite mirror) build on this one passing.

use crate::util::seaweed::{SECRET_KEY, SeaweedFs};
use crate::util::*;

#[test]
fn the_test_store_enforces_signatures_and_restic_uses_it() {
    let test = "s3::the_test_store_enforces_signatures_and_restic_uses_it";
    if !require_tool("weed", test) || !require_tool("restic", test) {
        return;
    }
    let store = SeaweedFs::start();
    let dir = TempDir::new("s3-store");
    let cache = dir.path().join("cache");
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("a"), pseudo_random(300_000, 1)).unwrap();
    let run = |secret: &str, args: &[&str]| {
        store
            .restic("bucket/repo", secret, &cache)
            .args(args)
            .output()
            .expect("run restic")
    };
    ok(run(SECRET_KEY, &["init"]), "init");
    ok(
        run(SECRET_KEY, &["backup", files.to_str().unwrap()]),
        "backup",
    );
    ok(run(SECRET_KEY, &["check", "--read-data"]), "check");
    // A mock that accepts any signature would let this through.
    let wrong = store
        .restic("bucket/other", "not-the-secret", &cache)
        .arg("init")
        .output()
        .expect("run restic");
    let said = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        !wrong.status.success(),
        "a wrong secret was accepted:\n{said}"
    );
    assert!(said.contains("signature"), "{said}\n{}", store.log());
}
