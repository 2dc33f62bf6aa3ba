//! Compiles the vendored Envoy .proto files (proto/, see proto/README.md) into a
//! FileDescriptorSet at `$OUT_DIR/envoy_descriptors.bin`, which `xds::json`
//! loads to render resources as proto3 JSON. Pure Rust (protox): no protoc.

use std::path::{Path, PathBuf};

/// Include dirs under proto/, in lookup order. Keep in step with proto/vendor.sh.
const INCLUDES: &[&str] = &[
    "data-plane-api",
    "xds",
    "googleapis",
    "protoc-gen-validate",
    "cel-spec/proto",
    "opentelemetry-proto",
    "client_model",
    "ratelimit/api",
];

fn main() {
    println!("cargo:rerun-if-changed=proto");

    // Read at run time: the compiled script is cached in a target directory
    // that clones at other paths share, so a baked-in path would be stale.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let proto = Path::new(&manifest_dir).join("proto");
    let roots_file = proto.join("roots.txt");
    let roots: Vec<String> = std::fs::read_to_string(&roots_file)
        .unwrap_or_else(|e| panic!("reading {}: {e}", roots_file.display()))
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    // Only the include dirs that vendor.sh actually populated.
    let includes: Vec<PathBuf> = INCLUDES
        .iter()
        .map(|i| proto.join(i))
        .filter(|p| p.is_dir())
        .collect();

    let mut compiler = protox::Compiler::new(&includes).expect("protox include paths");
    // Imports are needed so the runtime pool is self-contained (google/protobuf
    // well-known types come from protox itself); source info (comments) is not.
    compiler.include_imports(true).include_source_info(false);
    if let Err(e) = compiler.open_files(&roots) {
        panic!("compiling proto/roots.txt with protox (run proto/vendor.sh after editing roots.txt?): {e:?}");
    }
    let bytes = compiler.encode_file_descriptor_set();

    let out =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("envoy_descriptors.bin");
    std::fs::write(&out, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
}
