//! Names this build of the `shop` binaries, `SHOP_BUILD_ID`: a hash of the sources of every
//! workspace and vendored package (their `src`, `build.rs` and `Cargo.toml`), `Cargo.lock`, the
//! target, the profile and the features. `shop serve <service>` hands over to the binary
//! `shop-<service>` beside it only when that binary answers the same name (src/serve.rs): after
//! `cargo run`, which rebuilds `shop` alone, an older `shop-order` is left unused.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir.join("../..");
    let mut hasher = DefaultHasher::new();
    for name in ["TARGET", "PROFILE"] {
        std::env::var(name).unwrap_or_default().hash(&mut hasher);
    }
    let mut features: Vec<String> =
        std::env::vars().map(|(k, _)| k).filter(|k| k.starts_with("CARGO_FEATURE_")).collect();
    features.sort();
    features.hash(&mut hasher);

    let mut inputs = vec![root.join("Cargo.toml"), root.join("Cargo.lock")];
    for group in ["apps", "services", "crates", "vendor"] {
        let Ok(entries) = std::fs::read_dir(root.join(group)) else { continue };
        let mut packages: Vec<PathBuf> =
            entries.flatten().map(|e| e.path()).filter(|p| p.join("Cargo.toml").is_file()).collect();
        packages.sort();
        for package in packages {
            inputs.extend(["Cargo.toml", "build.rs", "src"].map(|part| package.join(part)));
        }
    }
    for input in inputs.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", input.display());
        hash_tree(&root, input, &mut hasher);
    }
    println!("cargo:rustc-env=SHOP_BUILD_ID={:016x}", hasher.finish());
}

/// Hashes a file's path (from the root) and contents, or every file under a folder, in order.
fn hash_tree(root: &Path, path: &Path, hasher: &mut DefaultHasher) {
    if path.is_dir() {
        let mut children: Vec<PathBuf> = std::fs::read_dir(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
            .flatten()
            .map(|e| e.path())
            .collect();
        children.sort();
        for child in children {
            hash_tree(root, &child, hasher);
        }
    } else {
        path.strip_prefix(root).unwrap_or(path).hash(hasher);
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display())).hash(hasher);
    }
}
