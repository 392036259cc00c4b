//! Embeds the project's own contracts (`tests/contracts/wasm/*.wasm` and its `PAIRS.tsv`) in the
//! `synor` program, for runs without a corpus.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/contracts/wasm");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".wasm"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut code = String::from(
        "/// The embedded contracts: (name, bytes).\npub static FILES: &[(&str, &[u8])] = &[\n",
    );
    for name in &files {
        let path = dir.join(name);
        println!("cargo:rerun-if-changed={}", path.display());
        writeln!(
            code,
            "    ({name:?}, include_bytes!({:?})),",
            path.display().to_string()
        )
        .unwrap();
    }
    code.push_str("];\n");
    let pairs = dir.join("PAIRS.tsv");
    println!("cargo:rerun-if-changed={}", pairs.display());
    let pairs_text = std::fs::read_to_string(&pairs).unwrap_or_default();
    writeln!(
        code,
        "/// The embedded upgrade pairs (`kind old new`).\npub static PAIRS: &str = {pairs_text:?};"
    )
    .unwrap();
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("embedded.rs");
    std::fs::write(out, code).unwrap();
}
