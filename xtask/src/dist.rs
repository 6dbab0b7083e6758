//! What `dist/` needs after Trunk: the worker's wasm stripped of what only
//! a debugger reads, content-hashed names for the browser worker's files too, and a
//! brotli and a gzip copy of every file, so that
//! the coordinator serves each compressed without compressing it per
//! request, and a browser caches each hashed file for good.
//!
//! Trunk hashes the app's files but not a worker's (the app names the
//! worker's loader by a fixed path), so the loader keeps its name (58
//! bytes, never cached) and imports the hashed glue, which names the
//! hashed wasm.

use std::path::Path;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// The browser worker's two builds (with WebGPU, and for the CPU alone),
/// named as Trunk writes their files.
pub const WORKERS: [&str; 2] = ["oblivion-worker-wasm", "oblivion-worker-cpu"];

/// Brotli quality and window: quality 9 is within a few per cent of 11 in
/// size on our wasm, at a fraction of the time (see the README's numbers).
const BROTLI_QUALITY: u32 = 9;
const BROTLI_WINDOW: u32 = 22;

/// 16 hex digits of the content's sha256, as Trunk's own names carry.
fn short_hash(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..8])
}

/// Replaces the one occurrence of `from` in `text` by `to`; anything else
/// means Trunk's output changed shape, and is an error rather than a
/// silently stale reference.
fn replace_once(text: &str, from: &str, to: &str, file: &str) -> Result<String> {
    match text.matches(from).count() {
        1 => Ok(text.replacen(from, to, 1)),
        n => bail!("{file}: expected one reference to {from}, found {n}"),
    }
}

/// Renames the wasm and glue of `worker` (one of [`WORKERS`]) to
/// content-hashed names and points its loader at them.
pub fn hash_worker(dir: &Path, worker: &str) -> Result<()> {
    let wasm_name = format!("{worker}_bg.wasm");
    let glue_name = format!("{worker}.js");
    let loader_name = format!("{worker}_loader.js");
    let wasm = std::fs::read(dir.join(&wasm_name)).with_context(|| wasm_name.clone())?;
    let hashed_wasm = format!("{worker}-{}_bg.wasm", short_hash(&wasm));
    let glue = std::fs::read_to_string(dir.join(&glue_name)).with_context(|| glue_name.clone())?;
    let glue = replace_once(
        &glue,
        &format!("'{wasm_name}'"),
        &format!("'{hashed_wasm}'"),
        &glue_name,
    )?;
    let hashed_glue = format!("{worker}-{}.js", short_hash(glue.as_bytes()));
    let loader =
        std::fs::read_to_string(dir.join(&loader_name)).with_context(|| loader_name.clone())?;
    let loader = replace_once(
        &loader,
        &format!("./{glue_name}"),
        &format!("./{hashed_glue}"),
        &loader_name,
    )?;
    std::fs::rename(dir.join(&wasm_name), dir.join(&hashed_wasm))?;
    std::fs::write(dir.join(&hashed_glue), glue)?;
    std::fs::remove_file(dir.join(&glue_name))?;
    std::fs::write(dir.join(&loader_name), loader)?;
    Ok(())
}

/// The WebAssembly features our modules use, for wasm-opt to read them.
const WASM_FEATURES: &[&str] = &[
    "--enable-simd",
    "--enable-bulk-memory",
    "--enable-sign-ext",
    "--enable-nontrapping-float-to-int",
    "--enable-mutable-globals",
    "--enable-reference-types",
    "--enable-multivalue",
];

/// Strips the wasm of `worker` in `dir` of its debug names and producer
/// data, in place, with binaryen's `wasm-opt` at `tool`: 36.9 to 29.9 MB,
/// 3.96 to 3.03 MB brotli, in about 20 s. Before [`hash_worker`], so that
/// its name is the stripped content's. The app's wasm is left as Trunk
/// wrote it: the page names it with a subresource-integrity hash.
///
/// Only stripped, not optimized: `-O2` made the MLP train 35% slower in
/// the browser, and the CNN no faster, for 4 minutes of build. binaryen comes from
/// npm: Debian's (version 108) rewrites wasm-bindgen's `externref` table as
/// a table of functions, and the module then fails to start.
pub fn strip_worker(dir: &Path, worker: &str, tool: &Path, cache: &mut Cache) -> Result<()> {
    let path = dir.join(format!("{worker}_bg.wasm"));
    let key = format!("{}.stripped.wasm", content_hash(&std::fs::read(&path)?));
    if let Some(stripped) = cache.get(&key) {
        std::fs::write(&path, stripped)?;
        return Ok(());
    }
    let status = std::process::Command::new(tool)
        .args(WASM_FEATURES)
        .args(["--strip-debug", "--strip-producers"])
        .arg(&path)
        .arg("-o")
        .arg(&path)
        .status()
        .with_context(|| format!("running {}", tool.display()))?;
    if !status.success() {
        bail!("wasm-opt failed on {}: {status}", path.display());
    }
    cache.put(&key, &std::fs::read(&path)?)
}

/// The content's whole sha256, in hex.
fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What stripping and compressing made of each content, by its hash, so
/// that a build whose output did not change does not spend a minute
/// doing it again (CI keeps the cache in its target directory). Entries
/// not used by a build are dropped at its end ([`Cache::prune`]).
pub struct Cache {
    dir: std::path::PathBuf,
    used: std::collections::HashSet<String>,
}

impl Cache {
    pub fn open(dir: std::path::PathBuf) -> Result<Cache> {
        std::fs::create_dir_all(&dir)?;
        Ok(Cache {
            dir,
            used: Default::default(),
        })
    }

    fn get(&mut self, key: &str) -> Option<Vec<u8>> {
        let bytes = std::fs::read(self.dir.join(key)).ok()?;
        self.used.insert(key.to_string());
        Some(bytes)
    }

    fn put(&mut self, key: &str, bytes: &[u8]) -> Result<()> {
        // Whole or not at all: a build stopped midway leaves no half entry.
        let partial = self.dir.join(format!("{key}.partial"));
        std::fs::write(&partial, bytes)?;
        std::fs::rename(&partial, self.dir.join(key))?;
        self.used.insert(key.to_string());
        Ok(())
    }

    /// Removes the entries this build did not use.
    pub fn prune(&self) -> Result<()> {
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            if !self.used.contains(&*entry.file_name().to_string_lossy()) {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }
}

/// Writes `<file>.br` and `<file>.gz` beside every file of `dir` (none of
/// the compressed ones themselves). Returns (file, bytes, brotli bytes,
/// gzip bytes) for each.
pub fn precompress(dir: &Path, cache: &mut Cache) -> Result<Vec<(String, usize, usize, usize)>> {
    use std::io::Write;
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if !path.is_file() || name.ends_with(".br") || name.ends_with(".gz") {
            continue;
        }
        let bytes = std::fs::read(&path)?;
        let hash = content_hash(&bytes);
        let (br_key, gz_key) = (format!("{hash}.br"), format!("{hash}.gz"));
        if let (Some(br), Some(gz)) = (cache.get(&br_key), cache.get(&gz_key)) {
            std::fs::write(dir.join(format!("{name}.br")), &br)?;
            std::fs::write(dir.join(format!("{name}.gz")), &gz)?;
            out.push((name, bytes.len(), br.len(), gz.len()));
            continue;
        }
        // The two encodings at once: one core each.
        let (br, gz) = std::thread::scope(|s| {
            let br = s.spawn(|| -> std::io::Result<Vec<u8>> {
                let mut br = Vec::new();
                {
                    let mut w = brotli::CompressorWriter::new(
                        &mut br,
                        1 << 16,
                        BROTLI_QUALITY,
                        BROTLI_WINDOW,
                    );
                    w.write_all(&bytes)?;
                }
                Ok(br)
            });
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            let gz = gz.write_all(&bytes).and_then(|()| gz.finish());
            (br.join(), gz)
        });
        let br = br.map_err(|_| anyhow::anyhow!("brotli panicked on {name}"))??;
        let gz = gz?;
        std::fs::write(dir.join(format!("{name}.br")), &br)?;
        std::fs::write(dir.join(format!("{name}.gz")), &gz)?;
        cache.put(&br_key, &br)?;
        cache.put(&gz_key, &gz)?;
        out.push((name, bytes.len(), br.len(), gz.len()));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_gets_hashed_names_and_compressed_copies() {
        let dir = std::env::temp_dir().join(format!("oblivion-dist-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("oblivion-worker-wasm_bg.wasm"),
            b"\0asm wasm bytes",
        )
        .unwrap();
        std::fs::write(
            dir.join("oblivion-worker-wasm.js"),
            "x = new URL('oblivion-worker-wasm_bg.wasm', import.meta.url);",
        )
        .unwrap();
        std::fs::write(
            dir.join("oblivion-worker-wasm_loader.js"),
            "import init from './oblivion-worker-wasm.js';await init();",
        )
        .unwrap();
        hash_worker(&dir, WORKERS[0]).unwrap();
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        let wasm = names.iter().find(|n| n.ends_with("_bg.wasm")).unwrap();
        let glue = names
            .iter()
            .find(|n| n.ends_with(".js") && !n.contains("loader"))
            .unwrap();
        assert_eq!(
            wasm.len(),
            "oblivion-worker-wasm-_bg.wasm".len() + 16,
            "{wasm}"
        );
        let glue_text = std::fs::read_to_string(dir.join(glue)).unwrap();
        assert!(glue_text.contains(wasm.as_str()), "{glue_text}");
        let loader = std::fs::read_to_string(dir.join("oblivion-worker-wasm_loader.js")).unwrap();
        assert!(loader.contains(glue.as_str()), "{loader}");
        // A second run finds nothing to rename: Trunk's output is gone.
        assert!(hash_worker(&dir, WORKERS[0]).is_err());

        let mut cache = Cache::open(dir.join("cache")).unwrap();
        let sizes = precompress(&dir, &mut cache).unwrap();
        assert_eq!(sizes.len(), 3);
        let check = |sizes: &[(String, usize, usize, usize)]| {
            for (name, ..) in sizes {
                let br = std::fs::read(dir.join(format!("{name}.br"))).unwrap();
                let mut plain = Vec::new();
                brotli::BrotliDecompress(&mut br.as_slice(), &mut plain).unwrap();
                assert_eq!(plain, std::fs::read(dir.join(name)).unwrap());
            }
        };
        check(&sizes);

        // A second build: the same contents come from the cache, a changed
        // one is compressed anew, and what no build used is dropped.
        let loader = dir.join("oblivion-worker-wasm_loader.js");
        std::fs::write(&loader, "import init from './other.js';await init();").unwrap();
        let mut cache = Cache::open(dir.join("cache")).unwrap();
        assert_eq!(precompress(&dir, &mut cache).unwrap().len(), 3);
        check(&sizes);
        cache.prune().unwrap();
        assert_eq!(std::fs::read_dir(dir.join("cache")).unwrap().count(), 6);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
