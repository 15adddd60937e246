//! With `autotests = false` a new file in `tests/` would silently never run: every one must be
//! a module of a group.

#[test]
fn every_test_file_belongs_to_a_group() {
    let tests = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut groups = String::new();
    for entry in std::fs::read_dir(tests.join("groups")).expect("tests/groups") {
        let path = entry.expect("entry").path();
        groups += &std::fs::read_to_string(&path).expect("group file");
    }
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&tests).expect("tests") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name.ends_with(".rs") && !groups.contains(&format!("#[path = \"../{name}\"]")) {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "tests/{missing:?} belong to no group in tests/groups/ (add a `#[path]` module there)"
    );
}
