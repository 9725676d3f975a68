//! Embeds the web client's committed bundle (`web/dist`, built by Vite) into this crate:
//! generates `$OUT_DIR/web_assets.rs`, a sorted table of `(path, bytes)` with one
//! `include_bytes!` per file, and tells cargo to rebuild when any of them changes. No
//! crate does this for us (neither `rust-embed` nor `include_dir` is in the tree, and
//! the table is ten lines); a missing bundle embeds nothing and says so.

use std::fs;
use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let dist = manifest.join("../../web/dist");
    println!("cargo:rerun-if-changed={}", dist.display());
    let mut all = Vec::new();
    files(&dist, &mut all);
    all.sort();
    if all.is_empty() {
        println!(
            "cargo:warning=no web client bundle in {}: `/` will be 404",
            dist.display()
        );
    }
    let mut table =
        String::from("/// The web client's files: (URL path, contents), sorted by path.\n");
    table.push_str("pub static ASSETS: &[(&str, &[u8])] = &[\n");
    for path in &all {
        println!("cargo:rerun-if-changed={}", path.display());
        let Ok(rel) = path.strip_prefix(&dist) else {
            continue;
        };
        let url: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let abs = fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        table.push_str(&format!(
            "    ({:?}, include_bytes!({:?})),\n",
            format!("/{}", url.join("/")),
            abs.display().to_string()
        ));
    }
    table.push_str("];\n");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("web_assets.rs");
    if let Err(e) = fs::write(&out, table) {
        panic!("writing {}: {e}", out.display());
    }
}
