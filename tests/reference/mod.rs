//! Where the integration tests find reference data that lives beside the repository, not in it:
//! `<repository>/../shared/reference/` (the layout of every checkout and of CI), or
//! `$GGJH_SHARED/reference/` when that is set. Knows paths only, nothing about the data.

// Each test crate that includes this module uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The eventstream framing vectors directory for a `GGJH_SHARED` value (`shared`, if set) and
/// the repository root (`manifest_dir`). Errors name the directory that was expected and how
/// to point the tests elsewhere.
pub fn eventstream_vectors_dir(
    shared: Option<&str>,
    manifest_dir: &Path,
) -> Result<PathBuf, String> {
    let (base, source) = match shared {
        Some(dir) if !dir.is_empty() => (PathBuf::from(dir), "GGJH_SHARED"),
        _ => (
            manifest_dir.join("..").join("shared"),
            "the repository's ../shared",
        ),
    };
    let dir = base.join("reference").join("eventstream-vectors");
    if dir.is_dir() {
        Ok(dir)
    } else {
        Err(format!(
            "the eventstream framing vectors are not at {} (from {source}); they live in \
             shared/reference/eventstream-vectors beside the repository: check it out there or \
             set GGJH_SHARED to the directory that holds reference/",
            dir.display()
        ))
    }
}

/// The bytes of one vector file, `path` relative to the vectors directory. Panics with the
/// expected location when the directory or the file is missing.
pub fn eventstream_vector(path: &str) -> Vec<u8> {
    let shared = std::env::var("GGJH_SHARED").ok();
    let dir = eventstream_vectors_dir(shared.as_deref(), Path::new(env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{e}"));
    let full = dir.join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}
