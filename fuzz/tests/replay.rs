//! Replays every committed input (seed corpora and past findings) through its target's check,
//! without AFL++: `cargo test` in this directory.

use std::path::Path;

#[test]
fn every_committed_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut replayed = 0;
    for (name, check) in ggjh_fuzz::TARGETS {
        for dir in ["corpus", "findings"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
                continue;
            };
            let mut paths: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
            paths.sort();
            for path in paths {
                let data = std::fs::read(&path).expect("read a corpus file");
                eprintln!("{name}: {}", path.display());
                check(&data);
                replayed += 1;
            }
        }
    }
    assert!(replayed > 0, "no committed inputs found");
    eprintln!("{replayed} inputs replayed");
}
