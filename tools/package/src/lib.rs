//! Packages the llm-router proxy-wasm filter as an OCI image that Istio's `WasmPlugin`
//! (`url: oci://REGISTRY/REPO@sha256:…`) and Envoy Gateway's `EnvoyExtensionPolicy`
//! (`wasm[].code.type: Image`) can pull, written as an OCI image layout directory and a tar of it, with
//! no container engine.
//!
//! # The format: the Wasm image spec's *compat* variant, as an OCI image
//!
//! Both consumers read images with the same code: Envoy Gateway's `internal/wasm/imagefetcher.go` is
//! Istio's `pkg/wasm/imagefetcher.go`, copied with its licence header. Read at istio/istio 86c9f01
//! (2026-08-22) and envoyproxy/gateway d32f282 (2026-08-21), it tries three formats in this order:
//!
//! 1. a manifest whose `mediaType` is Docker's `application/vnd.docker.distribution.manifest.v2+json`:
//!    the *last* layer must be `application/vnd.docker.image.rootfs.diff.tar.gzip`;
//! 2. any other manifest, the *compat* variant: the *last* layer must be
//!    `application/vnd.oci.image.layer.v1.tar+gzip`;
//! 3. the *oci* ("Wasm artifact") variant: **exactly two** layers, one of them
//!    `application/vnd.module.wasm.content.layer.v1+wasm`, whose blob is the raw module.
//!
//! For 1 and 2 the layer is gunzipped and untarred and the first entry whose base name is `plugin.wasm`
//! is the module. Both then require the module to start with the Wasm magic `\0asm` and be at least 8
//! bytes. Older Istio releases (istio/istio f6c9dd3) required exactly one layer for 1 and 2.
//!
//! This crate writes variant 2: it is accepted by every version read (tried before the artifact
//! variant, and a single layer is also the last one), and it is an ordinary OCI image that registries
//! and OCI clients take like any other (seen: skopeo 1.9.3 copied the archive into a Docker
//! Distribution 2.8.2 registry on loopback and back out by digest, digest unchanged). The others:
//! - The artifact variant as a manifest whose *config* is `application/vnd.module.wasm.config.v1+json`
//!   plus one wasm layer is **rejected** by both ("number of layers must be 2 but got 1"): they follow
//!   solo-io/wasm `spec/spec.md`, where the runtime config is a second *layer*, and so does their own
//!   test image. That two-layer form would pass, but uses custom media types that, as the solo-io spec
//!   README says, not every registry and tool takes; it buys nothing here.
//! - The Docker manifest type is Docker's, not OCI's.
//!
//! So the image is (solo-io/wasm `spec/spec-compat.md`; OCI image-spec `manifest.md`, `config.md`):
//! - manifest: `schemaVersion: 2`, `mediaType: application/vnd.oci.image.manifest.v1+json`, the
//!   annotation `module.wasm.image/variant: compat` (the compat spec asks for it with this layer type),
//!   `org.opencontainers.image.title` and, when given, `org.opencontainers.image.source`;
//! - config: `application/vnd.oci.image.config.v1+json`:
//!   `{"architecture":"wasm","os":"wasip1","rootfs":{"type":"layers","diff_ids":[sha256 of the tar]}}`
//!   (`wasm`/`wasip1` are Go's GOARCH/GOOS for the target, as `config.md` advises; nobody reads them);
//! - exactly one layer, `application/vnd.oci.image.layer.v1.tar+gzip`: a tar with a single regular file
//!   `plugin.wasm`.
//!
//! The layout (OCI image-spec `image-layout.md`) is `oci-layout` (`{"imageLayoutVersion":"1.0.0"}`),
//! `index.json` (an image index with one manifest descriptor annotated
//! `org.opencontainers.image.ref.name: TAG`) and `blobs/sha256/<hex>` for the config, the layer and the
//! manifest. The tag lives only in `index.json`, so it is not part of the manifest digest.
//!
//! The digest that `WasmPlugin` and `EnvoyExtensionPolicy` compare (the `@sha256:` of the URL, or their
//! `sha256` field) is the **manifest** digest, not the module's sha256: Istio's and Envoy Gateway's
//! `cache.go` compare it with `img.Digest()` of the pulled image.
//!
//! # Deterministic output
//!
//! The same `.wasm` (and options) always gives the same bytes and so the same manifest digest:
//! - the tar entry has mtime 0, uid/gid 0, no user or group names, mode 0644 (ustar format);
//! - the gzip stream is written here as *stored* deflate blocks (RFC 1951 §3.2.4) with mtime 0 and OS
//!   255, so no compressor version or backend (miniz_oxide or zlib, picked by Cargo feature
//!   unification) can change the bytes. The price: the module is not compressed (for the filter of
//!   2026-12 the layer is 814 KB where `gzip -9` gives 282 KB), pulled once per node or gateway;
//! - JSON comes from structs in a fixed field order with `BTreeMap` annotations, compact, no timestamps
//!   (no `created`).
//!
//! The archive of the layout is deterministic in the same way.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// `imageLayoutVersion` of the `oci-layout` file.
pub const IMAGE_LAYOUT_VERSION: &str = "1.0.0";
/// Media type of `index.json`.
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of the image manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of the image config.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of the one layer (what Istio and Envoy Gateway call the compat variant's OCI layer).
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The name Istio and Envoy Gateway look for in the layer.
pub const PLUGIN_FILE: &str = "plugin.wasm";
/// Manifest annotation of the Wasm image spec's compat variant.
pub const VARIANT_ANNOTATION: &str = "module.wasm.image/variant";
/// Its value.
pub const VARIANT_COMPAT: &str = "compat";
/// The tag, on the manifest's descriptor in `index.json`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// Manifest annotation: a human-readable title.
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";
/// Manifest annotation: where the source is.
pub const SOURCE_ANNOTATION: &str = "org.opencontainers.image.source";
/// Config `architecture` (Go's GOARCH for WebAssembly).
pub const ARCHITECTURE: &str = "wasm";
/// Config `os` (Go's GOOS for WASI preview 1, the filter's target).
pub const OS: &str = "wasip1";
/// Largest module read back: Istio's default `ISTIO_WASM_MAX_BINARY_SIZE_BYTES` and Envoy Gateway's
/// `maxWasmSize`, 256 MiB.
pub const MAX_WASM_SIZE: u64 = 256 * 1024 * 1024;

const WASM_MAGIC: &[u8] = b"\0asm";

/// An error with a message that says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

fn err(msg: impl Into<String>) -> Error {
    Error(msg.into())
}

fn io_err(what: impl fmt::Display, e: io::Error) -> Error {
    err(format!("{what}: {e}"))
}

/// An OCI content descriptor.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `index.json`: an OCI image index.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Index {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// An OCI image manifest.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The fields of an OCI image config that this image has (the REQUIRED ones).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ImageConfig {
    pub architecture: String,
    pub os: String,
    pub rootfs: RootFs,
}

/// `rootfs` of an image config.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct OciLayoutFile {
    #[serde(rename = "imageLayoutVersion")]
    image_layout_version: String,
}

/// What goes into the image besides the module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The tag: `org.opencontainers.image.ref.name` in `index.json`. Not part of the manifest digest.
    pub tag: String,
    /// `org.opencontainers.image.title` of the manifest.
    pub title: String,
    /// `org.opencontainers.image.source` of the manifest, if any (it changes the digest).
    pub source: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options { tag: "latest".to_owned(), title: "llm-router".to_owned(), source: None }
    }
}

/// The files of an OCI image layout, by path relative to its root (`oci-layout`, `index.json`,
/// `blobs/sha256/<hex>`), with `/` separators.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    pub files: BTreeMap<String, Vec<u8>>,
}

/// A built image: its layout and the digests in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub layout: Layout,
    /// `sha256:<hex>` of the manifest: what `oci://…@sha256:…` references.
    pub manifest_digest: String,
    pub config_digest: String,
    pub layer_digest: String,
    /// `sha256:<hex>` of the uncompressed layer tar (the config's `rootfs.diff_ids[0]`).
    pub diff_id: String,
    /// `sha256:<hex>` of the module itself.
    pub wasm_digest: String,
    pub tag: String,
}

/// What [`Layout::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub manifest_digest: String,
    pub config_digest: String,
    pub layer_digest: String,
    pub diff_id: String,
    /// The tag of the manifest's descriptor in `index.json`, if it has one.
    pub tag: Option<String>,
    /// `plugin.wasm`, as Istio and Envoy Gateway would extract it.
    pub wasm: Vec<u8>,
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in hash {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    s
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Checks what Istio and Envoy Gateway check of a module (`isValidWasmBinary`): at least the 8-byte
/// header, starting with the magic `\0asm`.
pub fn check_wasm(wasm: &[u8]) -> Result<(), Error> {
    if wasm.len() < 8 || !wasm.starts_with(WASM_MAGIC) {
        return Err(err(format!(
            "not a WebAssembly module: {} bytes{}",
            wasm.len(),
            if wasm.starts_with(WASM_MAGIC) { "" } else { ", no \\0asm magic" }
        )));
    }
    if wasm.len() as u64 > MAX_WASM_SIZE {
        return Err(err(format!(
            "module of {} bytes is over the 256 MiB Istio and Envoy Gateway accept",
            wasm.len()
        )));
    }
    Ok(())
}

/// Checks a tag against the OCI distribution spec's grammar `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn check_tag(tag: &str) -> Result<(), Error> {
    let ok_first = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let ok_rest = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    let mut chars = tag.chars();
    let valid = tag.len() <= 128 && chars.next().is_some_and(ok_first) && chars.all(ok_rest);
    if valid {
        Ok(())
    } else {
        Err(err(format!("not a valid tag: {tag:?} (allowed: [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}})")))
    }
}

/// The uncompressed layer: a ustar archive with the one regular file `plugin.wasm`, mtime 0, uid and
/// gid 0, mode 0644, no user or group names.
pub fn layer_tar(wasm: &[u8]) -> Result<Vec<u8>, Error> {
    let mut builder = tar::Builder::new(Vec::with_capacity(wasm.len() + 2048));
    let mut header = deterministic_header(tar::EntryType::Regular, 0o644);
    header.set_path(PLUGIN_FILE).map_err(|e| io_err("tar header", e))?;
    header.set_size(wasm.len() as u64);
    header.set_cksum();
    builder.append(&header, wasm).map_err(|e| io_err("tar", e))?;
    builder.into_inner().map_err(|e| io_err("tar", e))
}

fn deterministic_header(kind: tar::EntryType, mode: u32) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(0);
    header
}

/// A gzip member (RFC 1952) holding `data` in stored deflate blocks (RFC 1951 §3.2.4): header with no
/// name, mtime 0, XFL 0 and OS 255 (unknown); blocks of at most 65535 bytes; CRC-32 and size.
/// Any gzip reader reads it; its bytes depend on nothing but `data`.
pub fn gzip_stored(data: &[u8]) -> Vec<u8> {
    const MAX_BLOCK: usize = 65535;
    let blocks = data.len().div_ceil(MAX_BLOCK).max(1);
    let mut out = Vec::with_capacity(10 + data.len() + 5 * blocks + 8);
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
    if data.is_empty() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    let mut chunks = data.chunks(MAX_BLOCK).peekable();
    while let Some(chunk) = chunks.next() {
        // BFINAL in bit 0, BTYPE 00 (stored) in bits 1-2; the rest of the byte pads to the boundary.
        out.push(u8::from(chunks.peek().is_none()));
        let len = u16::try_from(chunk.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    let mut crc = flate2::Crc::new();
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    // ISIZE is the size modulo 2^32.
    out.extend_from_slice(&((data.len() as u64 & 0xffff_ffff) as u32).to_le_bytes());
    out
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain structs (strings, integers, string maps) cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn blob_path(digest: &str) -> Result<String, Error> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| err(format!("digest {digest:?}: only sha256 is supported")))?;
    if hex.len() != 64 || !hex.bytes().all(|b| HEX.contains(&b)) {
        return Err(err(format!("digest {digest:?}: not 64 lowercase hex digits")));
    }
    Ok(format!("blobs/sha256/{hex}"))
}

/// Builds the image of `wasm`.
pub fn build(wasm: &[u8], options: &Options) -> Result<Image, Error> {
    check_wasm(wasm)?;
    check_tag(&options.tag)?;

    let tar = layer_tar(wasm)?;
    let diff_id = sha256_digest(&tar);
    let layer = gzip_stored(&tar);
    let layer_digest = sha256_digest(&layer);

    let config = to_json(&ImageConfig {
        architecture: ARCHITECTURE.to_owned(),
        os: OS.to_owned(),
        rootfs: RootFs { kind: "layers".to_owned(), diff_ids: vec![diff_id.clone()] },
    });
    let config_digest = sha256_digest(&config);

    let mut annotations = BTreeMap::new();
    annotations.insert(VARIANT_ANNOTATION.to_owned(), VARIANT_COMPAT.to_owned());
    annotations.insert(TITLE_ANNOTATION.to_owned(), options.title.clone());
    if let Some(source) = &options.source {
        annotations.insert(SOURCE_ANNOTATION.to_owned(), source.clone());
    }
    let manifest = to_json(&Manifest {
        schema_version: 2,
        media_type: Some(MANIFEST_MEDIA_TYPE.to_owned()),
        config: Descriptor {
            media_type: CONFIG_MEDIA_TYPE.to_owned(),
            digest: config_digest.clone(),
            size: config.len() as u64,
            annotations: BTreeMap::new(),
        },
        layers: vec![Descriptor {
            media_type: LAYER_MEDIA_TYPE.to_owned(),
            digest: layer_digest.clone(),
            size: layer.len() as u64,
            annotations: BTreeMap::new(),
        }],
        annotations,
    });
    let manifest_digest = sha256_digest(&manifest);

    let index = to_json(&Index {
        schema_version: 2,
        media_type: Some(INDEX_MEDIA_TYPE.to_owned()),
        manifests: vec![Descriptor {
            media_type: MANIFEST_MEDIA_TYPE.to_owned(),
            digest: manifest_digest.clone(),
            size: manifest.len() as u64,
            annotations: BTreeMap::from([(REF_NAME_ANNOTATION.to_owned(), options.tag.clone())]),
        }],
    });
    let oci_layout = to_json(&OciLayoutFile { image_layout_version: IMAGE_LAYOUT_VERSION.to_owned() });

    let mut files = BTreeMap::new();
    files.insert("oci-layout".to_owned(), oci_layout);
    files.insert("index.json".to_owned(), index);
    files.insert(blob_path(&config_digest)?, config);
    files.insert(blob_path(&layer_digest)?, layer);
    files.insert(blob_path(&manifest_digest)?, manifest);

    Ok(Image {
        layout: Layout { files },
        manifest_digest,
        config_digest,
        layer_digest,
        diff_id,
        wasm_digest: sha256_digest(wasm),
        tag: options.tag.clone(),
    })
}

/// Rejects paths that are absolute, go up, or are otherwise odd; returns it with `/` separators.
fn clean_relative(path: &Path) -> Result<String, Error> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts
                .push(part.to_str().ok_or_else(|| err(format!("{}: not UTF-8", path.display())))?.to_owned()),
            Component::CurDir => {}
            _ => return Err(err(format!("{}: not a plain relative path", path.display()))),
        }
    }
    if parts.is_empty() {
        return Err(err("empty path"));
    }
    Ok(parts.join("/"))
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let name = path.file_name().ok_or_else(|| err(format!("{}: no file name", path.display())))?;
    let tmp = path.with_file_name(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    fs::write(&tmp, bytes).map_err(|e| io_err(tmp.display(), e))?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err(path.display(), e)
    })
}

impl Layout {
    /// Reads a layout directory: every regular file under it.
    pub fn read_dir(dir: &Path) -> Result<Layout, Error> {
        fn walk(root: &Path, dir: &Path, files: &mut BTreeMap<String, Vec<u8>>) -> Result<(), Error> {
            let entries = fs::read_dir(dir).map_err(|e| io_err(dir.display(), e))?;
            for entry in entries {
                let entry = entry.map_err(|e| io_err(dir.display(), e))?;
                let path = entry.path();
                let kind = entry.file_type().map_err(|e| io_err(path.display(), e))?;
                if kind.is_dir() {
                    walk(root, &path, files)?;
                } else if kind.is_file() {
                    let rel = path
                        .strip_prefix(root)
                        .map_err(|_| err(format!("{}: outside {}", path.display(), root.display())))?;
                    let bytes = fs::read(&path).map_err(|e| io_err(path.display(), e))?;
                    files.insert(clean_relative(rel)?, bytes);
                } else {
                    return Err(err(format!("{}: neither a file nor a directory", path.display())));
                }
            }
            Ok(())
        }
        let mut files = BTreeMap::new();
        walk(dir, dir, &mut files)?;
        Ok(Layout { files })
    }

    /// Reads a tar of a layout (what `skopeo copy oci-archive:FILE` takes).
    pub fn read_archive(bytes: &[u8]) -> Result<Layout, Error> {
        let mut files = BTreeMap::new();
        let mut archive = tar::Archive::new(bytes);
        for entry in archive.entries().map_err(|e| io_err("archive", e))? {
            let mut entry = entry.map_err(|e| io_err("archive", e))?;
            let kind = entry.header().entry_type();
            let path = entry.path().map_err(|e| io_err("archive entry", e))?.into_owned();
            if kind.is_dir() {
                continue;
            }
            if !kind.is_file() {
                return Err(err(format!("archive entry {}: not a regular file ({kind:?})", path.display())));
            }
            let name = clean_relative(&path)?;
            let mut data = Vec::new();
            entry.read_to_end(&mut data).map_err(|e| io_err(format!("archive entry {name}"), e))?;
            if files.insert(name.clone(), data).is_some() {
                return Err(err(format!("archive entry {name}: appears twice")));
            }
        }
        Ok(Layout { files })
    }

    /// Writes the layout to `dir`, replacing it if it is already an OCI layout (has `oci-layout`) or
    /// empty; any other existing `dir` is an error. The layout is written next to it first and renamed.
    pub fn write_dir(&self, dir: &Path) -> Result<(), Error> {
        let name = dir.file_name().ok_or_else(|| err(format!("{}: no directory name", dir.display())))?;
        if dir.exists() {
            let is_layout = dir.join("oci-layout").is_file();
            let is_empty = fs::read_dir(dir).map_err(|e| io_err(dir.display(), e))?.next().is_none();
            if !is_layout && !is_empty {
                return Err(err(format!(
                    "{} exists and is not an OCI image layout; not replacing it",
                    dir.display()
                )));
            }
        }
        let tmp = dir.with_file_name(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| io_err(tmp.display(), e))?;
        }
        for (rel, bytes) in &self.files {
            let path = tmp.join(rel);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(|e| io_err(parent.display(), e))?;
            }
            fs::write(&path, bytes).map_err(|e| io_err(path.display(), e))?;
        }
        if dir.exists() {
            fs::remove_dir_all(dir).map_err(|e| io_err(dir.display(), e))?;
        }
        fs::rename(&tmp, dir).map_err(|e| io_err(dir.display(), e))
    }

    /// The layout as a tar: a directory entry for each directory, then the files, in path order; every
    /// entry with mtime 0, uid/gid 0, mode 0755 (directories) or 0644 (files).
    pub fn to_archive(&self) -> Result<Vec<u8>, Error> {
        let size: usize = self.files.values().map(|f| f.len() + 1024).sum();
        let mut builder = tar::Builder::new(Vec::with_capacity(size + 4096));
        let mut dirs_done = std::collections::BTreeSet::new();
        for (rel, bytes) in &self.files {
            // Parent directories first, each once.
            let mut prefix = String::new();
            let parts: Vec<&str> = rel.split('/').collect();
            for part in parts.iter().take(parts.len().saturating_sub(1)) {
                prefix.push_str(part);
                prefix.push('/');
                if dirs_done.insert(prefix.clone()) {
                    let mut header = deterministic_header(tar::EntryType::Directory, 0o755);
                    header.set_path(&prefix).map_err(|e| io_err(&prefix, e))?;
                    header.set_cksum();
                    builder.append(&header, io::empty()).map_err(|e| io_err("archive", e))?;
                }
            }
            let mut header = deterministic_header(tar::EntryType::Regular, 0o644);
            header.set_path(rel).map_err(|e| io_err(rel, e))?;
            header.set_size(bytes.len() as u64);
            header.set_cksum();
            builder.append(&header, bytes.as_slice()).map_err(|e| io_err("archive", e))?;
        }
        builder.into_inner().map_err(|e| io_err("archive", e))
    }

    /// Writes [`Layout::to_archive`] to `path` (through a temporary file and a rename).
    pub fn write_archive(&self, path: &Path) -> Result<(), Error> {
        write_atomically(path, &self.to_archive()?)
    }

    /// The file at `path` (relative, `/`-separated), if there is one.
    pub fn file(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).map(Vec::as_slice)
    }

    /// The blob of `descriptor`, after checking its digest and size.
    pub fn blob(&self, descriptor: &Descriptor) -> Result<&[u8], Error> {
        let path = blob_path(&descriptor.digest)?;
        let bytes = self
            .files
            .get(&path)
            .ok_or_else(|| err(format!("{path} ({}) is missing", descriptor.media_type)))?;
        if bytes.len() as u64 != descriptor.size {
            return Err(err(format!(
                "{path} ({}): {} bytes, but its descriptor says {}",
                descriptor.media_type,
                bytes.len(),
                descriptor.size
            )));
        }
        let actual = sha256_digest(bytes);
        if actual != descriptor.digest {
            return Err(err(format!("{path} ({}): content has digest {actual}", descriptor.media_type)));
        }
        Ok(bytes)
    }

    /// Checks the layout the way this crate writes it and Istio and Envoy Gateway read it, and returns
    /// the module they would load:
    /// - `oci-layout` is `{"imageLayoutVersion":"1.0.0"}`, and there is nothing but it, `index.json`
    ///   and `blobs/sha256/<hex>` files, each of which hashes to its name;
    /// - `index.json` is an image index whose manifest descriptor is the one tagged `tag` (or the only
    ///   one, if `tag` is `None`), of the OCI manifest media type;
    /// - every descriptor's blob exists with its size and digest;
    /// - the manifest is an OCI manifest (schemaVersion 2) with the compat annotation, an OCI image
    ///   config and exactly one `tar+gzip` layer; the config's `rootfs` is `layers` with the layer's
    ///   diff ID;
    /// - the layer gunzips to a tar whose one entry is the regular file `plugin.wasm`, a Wasm module;
    /// - if `expected_wasm` is given, that module is byte for byte `expected_wasm`.
    pub fn verify(&self, tag: Option<&str>, expected_wasm: Option<&[u8]>) -> Result<Verified, Error> {
        let oci_layout: OciLayoutFile = parse_json("oci-layout", self.file("oci-layout"))?;
        if oci_layout.image_layout_version != IMAGE_LAYOUT_VERSION {
            return Err(err(format!(
                "oci-layout: imageLayoutVersion {:?}, expected {IMAGE_LAYOUT_VERSION:?}",
                oci_layout.image_layout_version
            )));
        }
        for (path, bytes) in &self.files {
            if path == "oci-layout" || path == "index.json" {
                continue;
            }
            let hex = path
                .strip_prefix("blobs/sha256/")
                .ok_or_else(|| err(format!("{path}: not part of an OCI image layout")))?;
            let expected = format!("sha256:{hex}");
            blob_path(&expected).map_err(|e| err(format!("{path}: {e}")))?;
            let actual = sha256_digest(bytes);
            if actual != expected {
                return Err(err(format!("{path}: content has digest {actual}")));
            }
        }

        let index: Index = parse_json("index.json", self.file("index.json"))?;
        if index.schema_version != 2 {
            return Err(err(format!("index.json: schemaVersion {}, expected 2", index.schema_version)));
        }
        if let Some(media_type) = &index.media_type {
            if media_type != INDEX_MEDIA_TYPE {
                return Err(err(format!("index.json: mediaType {media_type:?}")));
            }
        }
        let candidates: Vec<&Descriptor> = match tag {
            Some(tag) => index
                .manifests
                .iter()
                .filter(|d| d.annotations.get(REF_NAME_ANNOTATION).map(String::as_str) == Some(tag))
                .collect(),
            None => index.manifests.iter().collect(),
        };
        let descriptor = match candidates.as_slice() {
            [one] => *one,
            [] => {
                return Err(err(match tag {
                    Some(tag) => format!("index.json: no manifest tagged {tag:?}"),
                    None => "index.json: no manifests".to_owned(),
                }))
            }
            many => {
                return Err(err(format!(
                    "index.json: {} manifests{}; name the tag",
                    many.len(),
                    tag.map(|t| format!(" tagged {t:?}")).unwrap_or_default()
                )))
            }
        };
        if descriptor.media_type != MANIFEST_MEDIA_TYPE {
            return Err(err(format!(
                "index.json: the manifest descriptor has mediaType {:?}, expected {MANIFEST_MEDIA_TYPE}",
                descriptor.media_type
            )));
        }

        let manifest_bytes = self.blob(descriptor)?;
        let manifest: Manifest = parse_json("manifest", Some(manifest_bytes))?;
        if manifest.schema_version != 2 {
            return Err(err(format!("manifest: schemaVersion {}, expected 2", manifest.schema_version)));
        }
        if manifest.media_type.as_deref() != Some(MANIFEST_MEDIA_TYPE) {
            return Err(err(format!(
                "manifest: mediaType {:?}, expected {MANIFEST_MEDIA_TYPE}",
                manifest.media_type
            )));
        }
        if manifest.annotations.get(VARIANT_ANNOTATION).map(String::as_str) != Some(VARIANT_COMPAT) {
            return Err(err(format!(
                "manifest: annotation {VARIANT_ANNOTATION} is {:?}, expected {VARIANT_COMPAT:?}",
                manifest.annotations.get(VARIANT_ANNOTATION)
            )));
        }
        if manifest.config.media_type != CONFIG_MEDIA_TYPE {
            return Err(err(format!(
                "manifest: config mediaType {:?}, expected {CONFIG_MEDIA_TYPE}",
                manifest.config.media_type
            )));
        }
        let [layer] = manifest.layers.as_slice() else {
            return Err(err(format!("manifest: {} layers, expected exactly 1", manifest.layers.len())));
        };
        if layer.media_type != LAYER_MEDIA_TYPE {
            return Err(err(format!(
                "manifest: layer mediaType {:?}, expected {LAYER_MEDIA_TYPE}",
                layer.media_type
            )));
        }

        let config: ImageConfig = parse_json("config", Some(self.blob(&manifest.config)?))?;
        if config.rootfs.kind != "layers" {
            return Err(err(format!("config: rootfs.type {:?}, expected \"layers\"", config.rootfs.kind)));
        }
        if config.architecture.is_empty() || config.os.is_empty() {
            return Err(err("config: architecture and os are required"));
        }

        let tar = gunzip(self.blob(layer)?)?;
        let diff_id = sha256_digest(&tar);
        if config.rootfs.diff_ids != [diff_id.clone()] {
            return Err(err(format!(
                "config: rootfs.diff_ids {:?}, but the layer's diff ID is {diff_id}",
                config.rootfs.diff_ids
            )));
        }
        let wasm = plugin_from_tar(&tar)?;
        check_wasm(&wasm).map_err(|e| err(format!("layer: {PLUGIN_FILE}: {e}")))?;
        if let Some(expected) = expected_wasm {
            if wasm != expected {
                return Err(err(format!(
                    "layer: {PLUGIN_FILE} ({}, {} bytes) is not the expected module ({}, {} bytes)",
                    sha256_digest(&wasm),
                    wasm.len(),
                    sha256_digest(expected),
                    expected.len()
                )));
            }
        }

        Ok(Verified {
            manifest_digest: descriptor.digest.clone(),
            config_digest: manifest.config.digest.clone(),
            layer_digest: layer.digest.clone(),
            diff_id,
            tag: descriptor.annotations.get(REF_NAME_ANNOTATION).cloned(),
            wasm,
        })
    }
}

fn parse_json<T: for<'de> Deserialize<'de>>(what: &str, bytes: Option<&[u8]>) -> Result<T, Error> {
    let bytes = bytes.ok_or_else(|| err(format!("{what} is missing")))?;
    serde_json::from_slice(bytes).map_err(|e| err(format!("{what}: {e}")))
}

/// Gunzips a layer (with flate2, not with this crate's writer), up to [`MAX_WASM_SIZE`] plus room for
/// the tar headers.
fn gunzip(layer: &[u8]) -> Result<Vec<u8>, Error> {
    let limit = MAX_WASM_SIZE + 64 * 1024;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(layer)
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| io_err("layer: not a valid gzip stream", e))?;
    if out.len() as u64 > limit {
        return Err(err("layer: over 256 MiB uncompressed"));
    }
    Ok(out)
}

/// The module in a layer tar, which must hold exactly one entry: the regular file `plugin.wasm`.
fn plugin_from_tar(tar: &[u8]) -> Result<Vec<u8>, Error> {
    let mut archive = tar::Archive::new(tar);
    let mut found = None;
    let entries = archive.entries().map_err(|e| io_err("layer: not a tar", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| io_err("layer: not a tar", e))?;
        let path = entry.path().map_err(|e| io_err("layer: tar entry", e))?.into_owned();
        let name = clean_relative(&path).map_err(|e| err(format!("layer: {e}")))?;
        if name != PLUGIN_FILE || !entry.header().entry_type().is_file() || found.is_some() {
            return Err(err(format!(
                "layer: entry {name:?} ({:?}); the layer must hold only the regular file {PLUGIN_FILE}",
                entry.header().entry_type()
            )));
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data).map_err(|e| io_err(format!("layer: {PLUGIN_FILE}"), e))?;
        found = Some(data);
    }
    found.ok_or_else(|| err(format!("layer: no {PLUGIN_FILE}")))
}

/// Where the archive goes by default: `DIR.tar` next to the layout directory `DIR`.
pub fn default_archive_path(layout_dir: &Path) -> Option<PathBuf> {
    let name = layout_dir.file_name()?;
    Some(layout_dir.with_file_name(format!("{}.tar", name.to_string_lossy())))
}
