//! Builds OCI image layouts from small modules (and from the real filter when it has been built), reads
//! them back, and checks media types, digests, determinism and that corruption is caught.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use llm_router_package::{
    build, gzip_stored, layer_tar, sha256_digest, Descriptor, ImageConfig, Index, Layout, Manifest, Options,
    CONFIG_MEDIA_TYPE, INDEX_MEDIA_TYPE, LAYER_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, REF_NAME_ANNOTATION,
    TITLE_ANNOTATION, VARIANT_ANNOTATION,
};

/// The smallest valid module: the magic and version 1.
const MODULE: &[u8] = b"\0asm\x01\0\0\0";

/// The manifest digest of MODULE with the default options. If this changes, every generated resource
/// that references an image by digest changes with it: change the format only on purpose.
const MODULE_DIGEST: &str = "sha256:fa1382583c0505e9017028747bcf1b1b3a20bbfe08033ea33d9d1de2cf1cc70c";

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("llm-router-package").join(name);
    if dir.exists() {
        fs::remove_dir_all(&dir).unwrap();
    }
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn json<T: for<'de> serde::Deserialize<'de>>(bytes: &[u8]) -> T {
    serde_json::from_slice(bytes).unwrap()
}

fn blob<'a>(layout: &'a Layout, digest: &str) -> &'a [u8] {
    let hex = digest.strip_prefix("sha256:").unwrap();
    layout.file(&format!("blobs/sha256/{hex}")).unwrap()
}

fn manifest_of(layout: &Layout) -> Manifest {
    let index: Index = json(layout.file("index.json").unwrap());
    json(blob(layout, &index.manifests[0].digest))
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
    out
}

fn put_blob(layout: &mut Layout, bytes: Vec<u8>) -> String {
    let digest = sha256_digest(&bytes);
    let hex = digest.strip_prefix("sha256:").unwrap();
    layout.files.insert(format!("blobs/sha256/{hex}"), bytes);
    digest
}

/// Rewrites the manifest with `edit` and points index.json at the new one, keeping every digest
/// consistent, so that only the semantic checks can object.
fn edit_manifest(layout: &mut Layout, edit: impl FnOnce(&mut Manifest, &mut Layout)) {
    let mut index: Index = json(layout.file("index.json").unwrap());
    let old = index.manifests[0].digest.clone();
    let mut manifest: Manifest = json(blob(layout, &old));
    edit(&mut manifest, layout);
    let bytes = serde_json::to_vec(&manifest).unwrap();
    index.manifests[0].size = bytes.len() as u64;
    layout.files.remove(&format!("blobs/sha256/{}", old.strip_prefix("sha256:").unwrap()));
    index.manifests[0].digest = put_blob(layout, bytes);
    layout.files.insert("index.json".to_owned(), serde_json::to_vec(&index).unwrap());
}

/// A layer (and the config that names its diff ID) from an uncompressed tar, consistently hashed.
fn replace_layer(layout: &mut Layout, tar: Vec<u8>, media_type: &str) {
    edit_manifest(layout, |manifest, layout| {
        let mut config: ImageConfig = json(blob(layout, &manifest.config.digest));
        config.rootfs.diff_ids = vec![sha256_digest(&tar)];
        let config = serde_json::to_vec(&config).unwrap();
        manifest.config.size = config.len() as u64;
        manifest.config.digest = put_blob(layout, config);
        let layer = gzip_stored(&tar);
        manifest.layers[0] = Descriptor {
            media_type: media_type.to_owned(),
            size: layer.len() as u64,
            digest: put_blob(layout, layer),
            annotations: BTreeMap::new(),
        };
    });
}

fn verify_err(layout: &Layout) -> String {
    layout.verify(Some("latest"), Some(MODULE)).expect_err("verify should fail").to_string()
}

#[test]
fn builds_the_compat_variant_and_reads_it_back() {
    let image = build(MODULE, &Options::default()).unwrap();
    let layout = &image.layout;

    // Exactly the layout files and three blobs.
    let names: Vec<&str> = layout.files.keys().map(String::as_str).collect();
    assert_eq!(names.len(), 5, "{names:?}");
    assert_eq!(layout.file("oci-layout").unwrap(), br#"{"imageLayoutVersion":"1.0.0"}"#);
    for path in names.iter().filter(|p| p.starts_with("blobs/")) {
        let hex = path.strip_prefix("blobs/sha256/").unwrap();
        assert_eq!(sha256_digest(layout.file(path).unwrap()), format!("sha256:{hex}"));
    }

    let index: Index = json(layout.file("index.json").unwrap());
    assert_eq!(index.schema_version, 2);
    assert_eq!(index.media_type.as_deref(), Some(INDEX_MEDIA_TYPE));
    assert_eq!(index.manifests.len(), 1);
    let descriptor = &index.manifests[0];
    assert_eq!(descriptor.media_type, MANIFEST_MEDIA_TYPE);
    assert_eq!(descriptor.digest, image.manifest_digest);
    assert_eq!(descriptor.annotations[REF_NAME_ANNOTATION], "latest");
    let manifest_bytes = blob(layout, &descriptor.digest);
    assert_eq!(descriptor.size, manifest_bytes.len() as u64);
    assert_eq!(sha256_digest(manifest_bytes), image.manifest_digest);

    let manifest: Manifest = json(manifest_bytes);
    assert_eq!(manifest.schema_version, 2);
    assert_eq!(manifest.media_type.as_deref(), Some(MANIFEST_MEDIA_TYPE));
    assert_eq!(manifest.annotations[VARIANT_ANNOTATION], "compat");
    assert_eq!(manifest.annotations[TITLE_ANNOTATION], "llm-router");
    // The tag is not in the manifest, so it is not part of its digest.
    assert!(!manifest.annotations.contains_key(REF_NAME_ANNOTATION));
    assert_eq!(manifest.config.media_type, CONFIG_MEDIA_TYPE);
    assert_eq!(manifest.layers.len(), 1);
    assert_eq!(manifest.layers[0].media_type, LAYER_MEDIA_TYPE);
    assert_eq!(manifest.layers[0].digest, image.layer_digest);
    assert_eq!(manifest.config.digest, image.config_digest);

    let config: ImageConfig = json(blob(layout, &manifest.config.digest));
    assert_eq!((config.architecture.as_str(), config.os.as_str()), ("wasm", "wasip1"));
    assert_eq!(config.rootfs.kind, "layers");

    // The layer, read the way Istio and Envoy Gateway read it: gunzip, untar, find plugin.wasm.
    let tar = gunzip(blob(layout, &image.layer_digest));
    assert_eq!(config.rootfs.diff_ids, vec![sha256_digest(&tar)]);
    assert_eq!(image.diff_id, sha256_digest(&tar));
    let mut archive = tar::Archive::new(tar.as_slice());
    let mut entries = archive.entries().unwrap();
    let mut entry = entries.next().unwrap().unwrap();
    assert_eq!(entry.path().unwrap().to_str(), Some("plugin.wasm"));
    let header = entry.header().clone();
    assert!(header.entry_type().is_file());
    assert_eq!(header.mtime().unwrap(), 0);
    assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0));
    assert_eq!(header.mode().unwrap(), 0o644);
    let mut wasm = Vec::new();
    entry.read_to_end(&mut wasm).unwrap();
    assert_eq!(wasm, MODULE);
    drop(entry);
    assert!(entries.next().is_none());

    let verified = layout.verify(Some("latest"), Some(MODULE)).unwrap();
    assert_eq!(verified.manifest_digest, image.manifest_digest);
    assert_eq!(verified.config_digest, image.config_digest);
    assert_eq!(verified.layer_digest, image.layer_digest);
    assert_eq!(verified.tag.as_deref(), Some("latest"));
    assert_eq!(verified.wasm, MODULE);
    assert_eq!(layout.verify(None, None).unwrap(), verified);
    assert_eq!(image.wasm_digest, sha256_digest(MODULE));
}

#[test]
fn output_is_deterministic() {
    let a = build(MODULE, &Options::default()).unwrap();
    let b = build(MODULE, &Options::default()).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.layout.to_archive().unwrap(), b.layout.to_archive().unwrap());
    // Pinned: the same module gives this digest on any machine, with any flate2 backend.
    assert_eq!(a.manifest_digest, MODULE_DIGEST);

    // The tag only names the manifest; the source annotation is in it.
    let tagged = build(MODULE, &Options { tag: "v1.2.3".to_owned(), ..Options::default() }).unwrap();
    assert_eq!(tagged.manifest_digest, a.manifest_digest);
    assert_ne!(tagged.layout, a.layout);
    let sourced = build(
        MODULE,
        &Options { source: Some("https://example.invalid/llm-router".to_owned()), ..Options::default() },
    )
    .unwrap();
    assert_ne!(sourced.manifest_digest, a.manifest_digest);
    assert_eq!(sourced.layer_digest, a.layer_digest);

    // Another module, another digest.
    let other = build(b"\0asm\x01\0\0\0\0", &Options::default()).unwrap();
    assert_ne!(other.manifest_digest, a.manifest_digest);
}

#[test]
fn directory_and_archive_round_trip_on_disk() {
    let dir = scratch("round-trip");
    let image = build(MODULE, &Options::default()).unwrap();
    let out = dir.join("oci").join("llm-router");
    fs::create_dir_all(out.parent().unwrap()).unwrap();
    image.layout.write_dir(&out).unwrap();
    let archive = dir.join("oci").join("llm-router.tar");
    image.layout.write_archive(&archive).unwrap();

    let from_dir = Layout::read_dir(&out).unwrap();
    assert_eq!(from_dir, image.layout);
    let from_archive = Layout::read_archive(&fs::read(&archive).unwrap()).unwrap();
    assert_eq!(from_archive, image.layout);
    assert_eq!(from_dir.verify(Some("latest"), Some(MODULE)).unwrap().manifest_digest, MODULE_DIGEST);

    // The archive holds the layout at its root, directories before their files, fixed metadata.
    let bytes = fs::read(&archive).unwrap();
    let mut tar = tar::Archive::new(bytes.as_slice());
    let mut names = Vec::new();
    for entry in tar.entries().unwrap() {
        let entry = entry.unwrap();
        let header = entry.header();
        assert_eq!(header.mtime().unwrap(), 0);
        assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0));
        names.push(entry.path().unwrap().to_string_lossy().into_owned());
    }
    assert_eq!(&names[..2], ["blobs/", "blobs/sha256/"]);
    assert_eq!(&names[5..], ["index.json", "oci-layout"]);

    // Writing again replaces the layout; a directory that is not a layout is left alone.
    image.layout.write_dir(&out).unwrap();
    assert_eq!(Layout::read_dir(&out).unwrap(), image.layout);
    let precious = dir.join("precious");
    fs::create_dir_all(&precious).unwrap();
    fs::write(precious.join("notes.txt"), "keep").unwrap();
    let refused = image.layout.write_dir(&precious).unwrap_err().to_string();
    assert!(refused.contains("not an OCI image layout"), "{refused}");
    assert_eq!(fs::read_to_string(precious.join("notes.txt")).unwrap(), "keep");
}

#[test]
fn corrupted_blobs_are_detected() {
    let image = build(MODULE, &Options::default()).unwrap();
    let layer_path = format!("blobs/sha256/{}", image.layer_digest.strip_prefix("sha256:").unwrap());

    // A flipped byte in the layer.
    let mut layout = image.layout.clone();
    let layer = layout.files.get_mut(&layer_path).unwrap();
    let last = layer.len() - 20;
    layer[last] ^= 1;
    let e = verify_err(&layout);
    assert!(e.contains(&layer_path) && e.contains("digest"), "{e}");

    // A truncated config.
    let mut layout = image.layout.clone();
    let config_path = format!("blobs/sha256/{}", image.config_digest.strip_prefix("sha256:").unwrap());
    layout.files.get_mut(&config_path).unwrap().pop();
    assert!(verify_err(&layout).contains("digest"));

    // A missing blob.
    let mut layout = image.layout.clone();
    layout.files.remove(&layer_path);
    let e = verify_err(&layout);
    assert!(e.contains("missing"), "{e}");

    // A descriptor whose size lies.
    let mut layout = image.layout.clone();
    edit_manifest(&mut layout, |m, _| m.layers[0].size += 1);
    let e = verify_err(&layout);
    assert!(e.contains("bytes, but its descriptor says"), "{e}");

    // index.json pointing at a manifest that is not there.
    let mut layout = image.layout.clone();
    let mut index: Index = json(layout.file("index.json").unwrap());
    index.manifests[0].digest = sha256_digest(b"nothing");
    layout.files.insert("index.json".to_owned(), serde_json::to_vec(&index).unwrap());
    assert!(verify_err(&layout).contains("missing"));

    // A stray file, and a wrong oci-layout.
    let mut layout = image.layout.clone();
    layout.files.insert("notes.txt".to_owned(), b"x".to_vec());
    assert!(verify_err(&layout).contains("not part of an OCI image layout"));
    let mut layout = image.layout.clone();
    layout.files.insert("oci-layout".to_owned(), br#"{"imageLayoutVersion":"2.0.0"}"#.to_vec());
    assert!(verify_err(&layout).contains("imageLayoutVersion"));

    // Corruption on disk, read back from the directory and from the archive.
    let dir = scratch("corrupt");
    let out = dir.join("llm-router");
    image.layout.write_dir(&out).unwrap();
    let on_disk = out.join(&layer_path);
    let mut bytes = fs::read(&on_disk).unwrap();
    bytes[10] ^= 0x80;
    fs::write(&on_disk, &bytes).unwrap();
    let read = Layout::read_dir(&out).unwrap();
    assert!(read.verify(None, None).is_err());
    let archive = read.to_archive().unwrap();
    assert!(Layout::read_archive(&archive).unwrap().verify(None, None).is_err());
}

#[test]
fn wrong_media_types_and_contents_are_rejected_even_when_hashes_agree() {
    let image = build(MODULE, &Options::default()).unwrap();

    let mut layout = image.layout.clone();
    edit_manifest(&mut layout, |m, _| {
        m.layers[0].media_type = "application/vnd.oci.image.layer.v1.tar".to_owned()
    });
    assert!(verify_err(&layout).contains("layer mediaType"));

    let mut layout = image.layout.clone();
    edit_manifest(&mut layout, |m, _| {
        m.media_type = Some("application/vnd.docker.distribution.manifest.v2+json".to_owned())
    });
    assert!(verify_err(&layout).contains("manifest: mediaType"));

    let mut layout = image.layout.clone();
    edit_manifest(&mut layout, |m, _| {
        m.config.media_type = "application/vnd.module.wasm.config.v1+json".to_owned()
    });
    assert!(verify_err(&layout).contains("config mediaType"));

    let mut layout = image.layout.clone();
    edit_manifest(&mut layout, |m, _| {
        m.annotations.remove(VARIANT_ANNOTATION);
    });
    assert!(verify_err(&layout).contains(VARIANT_ANNOTATION));

    let mut layout = image.layout.clone();
    edit_manifest(&mut layout, |m, _| {
        let extra = m.layers[0].clone();
        m.layers.push(extra)
    });
    assert!(verify_err(&layout).contains("2 layers"));

    // The config naming another diff ID.
    let mut layout = image.layout.clone();
    edit_manifest(&mut layout, |m, layout| {
        let mut config: ImageConfig = json(blob(layout, &m.config.digest));
        config.rootfs.diff_ids = vec![sha256_digest(b"another")];
        let config = serde_json::to_vec(&config).unwrap();
        m.config.size = config.len() as u64;
        m.config.digest = put_blob(layout, config);
    });
    assert!(verify_err(&layout).contains("diff_ids"));

    // A layer with another file name, with an extra file, or with something that is not Wasm.
    let tar_of = |entries: &[(&str, &[u8])]| {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut header = tar::Header::new_ustar();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            builder.append_data(&mut header, name, *data).unwrap();
        }
        builder.into_inner().unwrap()
    };
    let mut layout = image.layout.clone();
    replace_layer(&mut layout, tar_of(&[("filter.wasm", MODULE)]), LAYER_MEDIA_TYPE);
    assert!(verify_err(&layout).contains("filter.wasm"));
    let mut layout = image.layout.clone();
    replace_layer(
        &mut layout,
        tar_of(&[("plugin.wasm", MODULE), ("runtime-config.json", b"{}")]),
        LAYER_MEDIA_TYPE,
    );
    assert!(verify_err(&layout).contains("runtime-config.json"));
    let mut layout = image.layout.clone();
    replace_layer(&mut layout, tar_of(&[("plugin.wasm", b"#!/bin/sh\n")]), LAYER_MEDIA_TYPE);
    assert!(verify_err(&layout).contains("not a WebAssembly module"));

    // Consistent, but another module than the one expected.
    let mut layout = image.layout.clone();
    let other: &[u8] = b"\0asm\x01\0\0\0\0";
    replace_layer(&mut layout, tar_of(&[("plugin.wasm", other)]), LAYER_MEDIA_TYPE);
    assert_eq!(layout.verify(Some("latest"), Some(other)).unwrap().wasm, other);
    assert!(verify_err(&layout).contains("not the expected module"));

    // A tag that is not there.
    let e = image.layout.verify(Some("v9"), None).unwrap_err().to_string();
    assert!(e.contains("no manifest tagged \"v9\""), "{e}");
}

#[test]
fn rejects_inputs_istio_and_envoy_gateway_would_refuse() {
    assert!(build(b"\0asm", &Options::default()).is_err());
    assert!(build(b"not wasm at all", &Options::default()).is_err());
    for tag in ["", "-x", "a/b", "a:b", &"x".repeat(129)] {
        let options = Options { tag: tag.to_owned(), ..Options::default() };
        assert!(build(MODULE, &options).is_err(), "tag {tag:?}");
    }
    for tag in ["latest", "v0.1.0", "_x", "0.1.0-rc.1", &"x".repeat(128)] {
        let options = Options { tag: tag.to_owned(), ..Options::default() };
        build(MODULE, &options).unwrap();
    }
}

#[test]
fn stored_gzip_is_read_by_flate2() {
    // Empty, one block, a full block, and several blocks with a short last one.
    for len in [0usize, 1, 65535, 65536, 200_000] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let gz = gzip_stored(&data);
        assert_eq!(gunzip(&gz), data, "len {len}");
        assert_eq!(&gz[..4], [0x1f, 0x8b, 8, 0]);
        assert_eq!(&gz[4..8], [0, 0, 0, 0], "mtime 0");
    }
    // And the layer tar is what it says.
    let tar = layer_tar(MODULE).unwrap();
    assert_eq!(tar.len(), 512 + 512 + 1024);
}

#[test]
fn cli_builds_and_verifies() {
    let dir = scratch("cli");
    let wasm = dir.join("m.wasm");
    fs::write(&wasm, MODULE).unwrap();
    let out = dir.join("oci").join("llm-router");
    let bin = env!("CARGO_BIN_EXE_llm-router-package");

    let run = |args: &[&str]| {
        let output = Command::new(bin).args(args).output().unwrap();
        (
            output.status.success(),
            String::from_utf8(output.stdout).unwrap(),
            String::from_utf8(output.stderr).unwrap(),
        )
    };
    let (ok, stdout, stderr) =
        run(&["build", "--wasm", wasm.to_str().unwrap(), "--out", out.to_str().unwrap(), "--tag", "v0.1.0"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout, format!("{MODULE_DIGEST}\n"));
    let archive = dir.join("oci").join("llm-router.tar");
    assert!(archive.is_file());

    let (ok, stdout, stderr) = run(&[
        "verify",
        "--archive",
        archive.to_str().unwrap(),
        "--tag",
        "v0.1.0",
        "--wasm",
        wasm.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["digest"], MODULE_DIGEST);
    assert_eq!(summary["tag"], "v0.1.0");
    assert_eq!(summary["wasm_size"], 8);

    let (ok, stdout, _) = run(&["verify", "--layout", out.to_str().unwrap()]);
    assert!(ok);
    assert_eq!(stdout, format!("{MODULE_DIGEST}\n"));

    // A module that is not the one packaged.
    let other = dir.join("other.wasm");
    fs::write(&other, b"\0asm\x01\0\0\0\0").unwrap();
    let (ok, _, stderr) =
        run(&["verify", "--layout", out.to_str().unwrap(), "--wasm", other.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("not the expected module"), "{stderr}");

    // Not a module.
    let text = dir.join("text.wasm");
    fs::write(&text, "hello").unwrap();
    let (ok, _, stderr) =
        run(&["build", "--wasm", text.to_str().unwrap(), "--out", dir.join("bad").to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("not a WebAssembly module"), "{stderr}");
}

/// The real filter, when `cargo build --release --target wasm32-wasip1 -p llm-router --lib` (or
/// scripts/package) has built it.
#[test]
fn packages_the_built_filter_when_present() {
    let wasm_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/wasm32-wasip1/release/llm_router.wasm");
    let Ok(wasm) = fs::read(&wasm_path) else {
        eprintln!("skipped: {} is not built (scripts/package builds it)", wasm_path.display());
        return;
    };
    let image = build(&wasm, &Options::default()).unwrap();
    assert_eq!(build(&wasm, &Options::default()).unwrap(), image);

    let dir = scratch("filter");
    let out = dir.join("llm-router");
    image.layout.write_dir(&out).unwrap();
    let archive = dir.join("llm-router.tar");
    image.layout.write_archive(&archive).unwrap();
    for layout in
        [Layout::read_dir(&out).unwrap(), Layout::read_archive(&fs::read(&archive).unwrap()).unwrap()]
    {
        let verified = layout.verify(Some("latest"), Some(&wasm)).unwrap();
        assert_eq!(verified.manifest_digest, image.manifest_digest);
        assert_eq!(verified.wasm.len(), wasm.len());
    }
    let manifest = manifest_of(&image.layout);
    assert_eq!(manifest.layers[0].media_type, LAYER_MEDIA_TYPE);
    eprintln!("{}: {} bytes, image {}", wasm_path.display(), wasm.len(), image.manifest_digest);
}
