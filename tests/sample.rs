//! The committed sample in data/sample is exactly what the generator writes for its seed and size, so the
//! manifest's counts and sums that other tests check are the generator's own figures.

use std::path::Path;

use healthetl::generate::{GenerateOptions, generate, read_manifest};

#[test]
fn the_committed_sample_is_the_generators_output_byte_for_byte() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample");
    let committed = read_manifest(&sample).expect("data/sample/manifest.json is committed");
    let out = std::env::temp_dir().join(format!("healthetl-sample-{}", std::process::id()));
    let fresh = generate(&GenerateOptions {
        fact_rows: committed.fact_rows,
        out_dir: out.clone(),
        seed: committed.seed,
        plain: false,
    })
    .expect("generate");
    assert_eq!(fresh, committed);
    for table in committed.tables.values() {
        let a = std::fs::read(sample.join(&table.file)).expect("committed file");
        let b = std::fs::read(out.join(&table.file)).expect("generated file");
        assert!(a == b, "{} differs from the generator's output", table.file);
    }
    std::fs::remove_dir_all(out).expect("clean up");
}
