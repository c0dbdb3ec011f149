//! The test suite's own rules, checked on its source so that the hazards they remove
//! cannot come back unnoticed: processes are started only through the guarded helpers
//! in `tests/common` (killed and reaped on drop, output never inherited, no `FJORD_*`
//! variable inherited), and no test frees a port for someone else to bind.

use std::path::{Path, PathBuf};

/// (pattern, why it is not allowed outside `tests/common`)
const FORBIDDEN: [(&str, &str); 5] = [
    (
        "CARGO_BIN_EXE_",
        "start binaries through the guarded helpers in tests/common",
    ),
    (
        "Stdio::inherit",
        "a child must not write to the test's own output",
    ),
    (
        ".output()",
        "run the CLI through tests/common, which has a deadline",
    ),
    (
        "fn free_port",
        "bind port 0 and read the bound address instead",
    ),
    (
        "drop(listener)",
        "a freed port may be taken by another test; hold a bound, non-listening socket",
    ),
];

fn test_files(directory: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(directory)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", directory.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "rs"))
        .collect();
    files.sort();
    files
}

#[test]
fn tests_start_processes_only_through_guards_and_never_free_ports() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    for crate_name in ["broker", "client"] {
        files.extend(test_files(&workspace.join(crate_name).join("tests")));
    }
    assert!(files.len() >= 6, "test files not found: {files:?}");
    let this_file = Path::new(file!()).file_name().unwrap();
    let mut violations = Vec::new();
    for file in files
        .iter()
        .filter(|file| file.file_name() != Some(this_file))
    {
        let text = std::fs::read_to_string(file).unwrap();
        for (number, line) in text.lines().enumerate() {
            for (pattern, why) in FORBIDDEN {
                if line.contains(pattern) {
                    violations.push(format!(
                        "{}:{}: {pattern}: {why}",
                        file.display(),
                        number + 1
                    ));
                }
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}
