//! `llm-router-package`: packages the filter as an OCI image layout and a tar of it, and checks them.
//! See the library's documentation for the format and why.

use std::fs;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use llm_router_package::{build, default_archive_path, Layout, Options, Verified};

#[derive(Parser)]
#[command(
    name = "llm-router-package",
    about = "Packages the llm-router proxy-wasm filter as an OCI image (Wasm image spec, compat variant) \
             that Istio's WasmPlugin and Envoy Gateway's EnvoyExtensionPolicy pull, without a container engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes the OCI image layout of a .wasm and a tar of it, checks both as read back from disk, and
    /// prints the manifest digest (sha256:…) on stdout.
    Build {
        /// The filter, e.g. target/wasm32-wasip1/release/llm_router.wasm.
        #[arg(long)]
        wasm: PathBuf,
        /// The layout directory to write (replaced if it already is an OCI layout).
        #[arg(long)]
        out: PathBuf,
        /// The tar of the layout, for `skopeo copy oci-archive:FILE:TAG`. Default: OUT.tar.
        #[arg(long)]
        archive: Option<PathBuf>,
        /// The tag (org.opencontainers.image.ref.name in index.json; not part of the digest).
        #[arg(long, default_value = "latest")]
        tag: String,
        /// org.opencontainers.image.title of the manifest.
        #[arg(long, default_value = "llm-router")]
        title: String,
        /// org.opencontainers.image.source of the manifest (a URL; it changes the digest).
        #[arg(long)]
        source: Option<String>,
        /// Print a JSON summary on stdout instead of the digest alone.
        #[arg(long)]
        json: bool,
    },
    /// Checks a layout directory or archive (index → manifest → config and layer, every size and
    /// digest, the media types, plugin.wasm) and prints its manifest digest on stdout.
    Verify {
        /// A layout directory.
        #[arg(long, conflicts_with = "archive", required_unless_present = "archive")]
        layout: Option<PathBuf>,
        /// A tar of a layout.
        #[arg(long)]
        archive: Option<PathBuf>,
        /// The tag to look for in index.json. Default: the only manifest.
        #[arg(long)]
        tag: Option<String>,
        /// Also require plugin.wasm to be exactly this file.
        #[arg(long)]
        wasm: Option<PathBuf>,
        /// Print a JSON summary on stdout instead of the digest alone.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Build { wasm, out, archive, tag, title, source, json } => {
            let module = fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;
            let archive = match archive {
                Some(archive) => archive,
                None => default_archive_path(&out)
                    .with_context(|| format!("{}: cannot name OUT.tar; pass --archive", out.display()))?,
            };
            if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
            }
            if let Some(parent) = archive.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
            }
            let options = Options { tag, title, source };
            let image = build(&module, &options).with_context(|| wasm.display().to_string())?;
            image.layout.write_dir(&out)?;
            image.layout.write_archive(&archive)?;

            // What is on disk, read back, is what gets pushed: check that, not the bytes in memory.
            let from_dir = Layout::read_dir(&out)?
                .verify(Some(&options.tag), Some(&module))
                .with_context(|| format!("{} does not check out", out.display()))?;
            let archive_bytes =
                fs::read(&archive).with_context(|| format!("reading {}", archive.display()))?;
            let from_archive = Layout::read_archive(&archive_bytes)?
                .verify(Some(&options.tag), Some(&module))
                .with_context(|| format!("{} does not check out", archive.display()))?;
            if from_dir.manifest_digest != image.manifest_digest
                || from_archive.manifest_digest != image.manifest_digest
            {
                bail!("the layout read back has another manifest digest");
            }

            eprintln!(
                "wrote OCI image layout {} and its archive {} (tag {}); manifest {}; plugin.wasm {} ({} bytes)",
                out.display(),
                archive.display(),
                options.tag,
                image.manifest_digest,
                image.wasm_digest,
                module.len()
            );
            if json {
                let summary = serde_json::json!({
                    "digest": image.manifest_digest,
                    "layout": out,
                    "archive": archive,
                    "tag": options.tag,
                    "config_digest": image.config_digest,
                    "layer_digest": image.layer_digest,
                    "wasm_sha256": image.wasm_digest,
                    "wasm_size": module.len(),
                });
                println!("{summary}");
            } else {
                println!("{}", image.manifest_digest);
            }
        }
        Command::Verify { layout, archive, tag, wasm, json } => {
            let expected = match &wasm {
                Some(path) => Some(fs::read(path).with_context(|| format!("reading {}", path.display()))?),
                None => None,
            };
            let (what, read) = match (&layout, &archive) {
                (Some(dir), _) => (dir.display().to_string(), Layout::read_dir(dir)?),
                (None, Some(file)) => {
                    let bytes = fs::read(file).with_context(|| format!("reading {}", file.display()))?;
                    (file.display().to_string(), Layout::read_archive(&bytes)?)
                }
                (None, None) => bail!("pass --layout DIR or --archive FILE"),
            };
            let verified: Verified = read
                .verify(tag.as_deref(), expected.as_deref())
                .with_context(|| format!("{what} does not check out"))?;
            eprintln!(
                "{what}: OK; manifest {}, tag {}, plugin.wasm {} bytes",
                verified.manifest_digest,
                verified.tag.as_deref().unwrap_or("(none)"),
                verified.wasm.len()
            );
            if json {
                let summary = serde_json::json!({
                    "digest": verified.manifest_digest,
                    "tag": verified.tag,
                    "config_digest": verified.config_digest,
                    "layer_digest": verified.layer_digest,
                    "wasm_sha256": llm_router_package::sha256_digest(&verified.wasm),
                    "wasm_size": verified.wasm.len(),
                });
                println!("{summary}");
            } else {
                println!("{}", verified.manifest_digest);
            }
        }
    }
    Ok(())
}
