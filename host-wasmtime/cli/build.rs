//! Embeds the project's own contracts (`tests/contracts/wasm/*.wasm` and its `PAIRS.tsv`) and
//! compute programs (`tests/contracts/wasm/programs/*.wasm`) in the `synor` program, for runs
//! without a corpus.

use std::fmt::Write as _;
use std::path::Path;

/// Appends `pub static NAME: &[(&str, &[u8])]` holding every `.wasm` file of `dir`.
fn embed(code: &mut String, name: &str, doc: &str, dir: &Path) {
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".wasm"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    writeln!(
        code,
        "/// {doc}: (name, bytes).\npub static {name}: &[(&str, &[u8])] = &["
    )
    .unwrap();
    for file in &files {
        let path = dir.join(file);
        println!("cargo:rerun-if-changed={}", path.display());
        writeln!(
            code,
            "    ({file:?}, include_bytes!({:?})),",
            path.display().to_string()
        )
        .unwrap();
    }
    code.push_str("];\n");
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/contracts/wasm");
    let mut code = String::new();
    embed(&mut code, "FILES", "The embedded contracts", &dir);
    embed(
        &mut code,
        "PROGRAMS",
        "The embedded compute programs",
        &dir.join("programs"),
    );
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
