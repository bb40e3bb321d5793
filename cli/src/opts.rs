//! Options shared by the subcommands: sizes and durations with units, level lists, and the
//! options that shape or place a pyramid (`--edge`, `--cache`, `--no-cache`, `--memory`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use clap::builder::TypedValueParser as _;
use lodcache::{LevelRule, Pyramid, Stack};

use crate::term::{clean, quote};

/// The most threads any pool of the tool gets (`--threads` above it is refused).
pub(crate) const MAX_THREADS: usize = 256;

/// The default edge: levels are made while the larger side exceeds it (CTHarvester's rule).
pub(crate) fn default_edge() -> u32 {
    LevelRule::default().edge
}

/// The options that shape or place a pyramid, accepted by every subcommand that opens a scan.
#[derive(Debug, Clone, Args)]
pub(crate) struct PyramidOpts {
    /// Levels are made while the larger side exceeds N pixels [default: 500, CTHarvester's
    /// rule; `serve` goes down to 64 on scans where 500 gives no level]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) edge: Option<u32>,
    /// The cache: a folder, or an object store shared by several machines: s3://BUCKET/PREFIX
    /// (credentials from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), gs://BUCKET/PREFIX
    /// (GOOGLE_SERVICE_ACCOUNT, GOOGLE_SERVICE_ACCOUNT_KEY or GOOGLE_APPLICATION_CREDENTIALS;
    /// another server: GOOGLE_BASE_URL) or az://CONTAINER/PREFIX (AZURE_STORAGE_ACCOUNT_NAME,
    /// AZURE_STORAGE_ACCOUNT_KEY; another server: AZURE_STORAGE_ENDPOINT, or Azurite with
    /// AZURE_STORAGE_USE_EMULATOR=true and AZURITE_BLOB_STORAGE_URL). A local folder stays in
    /// front of it, see --local-cache [default: SCAN/.lodcache, or a per-user folder when SCAN
    /// is read-only]
    #[arg(
        long,
        value_name = "DIR|URL",
        conflicts_with = "no_cache",
        value_parser = clap::builder::OsStringValueParser::new().try_map(parse_cache)
    )]
    pub(crate) cache: Option<CacheArg>,
    /// With --cache URL: the local folder in front of the store [default: a per-user
    /// folder, $XDG_CACHE_HOME/lodcache/NAME-HASH; on a cluster, the node's local disk]
    #[arg(long, value_name = "DIR")]
    pub(crate) local_cache: Option<PathBuf>,
    /// With --cache s3://... only: the S3-compatible server, e.g. http://127.0.0.1:8333
    /// (path-style requests, plain HTTP allowed) [default: AWS_ENDPOINT_URL, else Amazon S3].
    /// gs:// and az:// take theirs from GOOGLE_BASE_URL and AZURE_STORAGE_ENDPOINT
    #[arg(long, value_name = "URL")]
    pub(crate) s3_endpoint: Option<String>,
    /// With --cache URL: bytes of this scan's blobs kept in the store, with a unit (50G);
    /// past it the least valuable go [default: no limit]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) s3_budget: Option<u64>,
    /// With --cache URL: timeout of one request to the store, e.g. 10s [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) s3_timeout: Option<Duration>,
    /// Keep nothing on disk: cache in memory only
    #[arg(long)]
    pub(crate) no_cache: bool,
    /// Memory budget of compressed slices, with a unit (512M, 2G) [default: 512M]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) memory: Option<u64>,
    /// Memory that decoding slices may take at once, process-wide, with a unit (1G); a slice
    /// needing more is refused, naming the file [default: a quarter of RAM, 256M to 4G]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) decode_budget: Option<u64>,
    /// Also fingerprint every source slice by its whole content (reads every source file when
    /// the scan opens): catches a slice rewritten with the same size and time. Switching it on
    /// for an existing cache folder rebuilds it once
    #[arg(long)]
    pub(crate) content_check: bool,
    /// The physical size of a source voxel, X,Y,Z in micrometres (e.g. 4.5,4.5,4.5),
    /// overriding what the scan says (TIFF resolution tags, ImageJ, a scanner log)
    #[arg(long, value_name = "X,Y,Z", value_parser = parse_voxel_size)]
    pub(crate) voxel_size: Option<[f64; 3]>,
}

/// Where the cache is: a folder, or an object store (behind a local folder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CacheArg {
    /// A cache folder.
    Dir(PathBuf),
    /// An object store URL, `s3://bucket/prefix`, `gs://bucket/prefix` or
    /// `az://container/prefix`.
    Url(String),
}

/// `--cache`: a URL when it has a scheme (`s3://`, `gs://`, `az://`, `azure://`; others are
/// refused by name, `file://` with the reason), else a folder (any bytes).
fn parse_cache(text: std::ffi::OsString) -> Result<CacheArg, String> {
    match text.to_str() {
        Some(t)
            if ["s3://", "gs://", "az://", "azure://"]
                .iter()
                .any(|s| t.starts_with(s)) =>
        {
            Ok(CacheArg::Url(t.to_string()))
        }
        Some(t) if t.starts_with("file://") => Err(format!(
            "{t:?}: file:// is not an object store here (a local file system cannot replace an \
             object on condition that it is the version read); give the folder itself"
        )),
        Some(t) if t.contains("://") => Err(format!(
            "{t:?}: the object stores supported are s3:// (S3 and S3-compatible servers), \
             gs:// (Google Cloud Storage) and az:// (Azure Blob Storage)"
        )),
        _ => Ok(CacheArg::Dir(PathBuf::from(text))),
    }
}

impl PyramidOpts {
    /// Opens the pyramid of `scan` with these options and `edge` (the edge to use, decided by
    /// the caller from [`PyramidOpts::edge`]); prints the library's warnings on stderr.
    pub(crate) fn open(
        &self,
        scan: &Path,
        edge: u32,
        decode_threads: Option<usize>,
        pool: Option<std::sync::Arc<rayon::ThreadPool>>,
    ) -> Result<Pyramid, String> {
        if let Some(bytes) = self.decode_budget {
            lodcache::set_decode_budget(bytes)
                .map_err(|e| format!("--decode-budget: {}", clean(&e.to_string())))?;
        }
        let mut builder = Pyramid::builder(scan)
            .with_edge(edge)
            .with_disk_cache(!self.no_cache)
            .with_content_check(self.content_check);
        match &self.cache {
            Some(CacheArg::Dir(dir)) => builder = builder.with_cache_dir(dir),
            Some(CacheArg::Url(url)) => {
                let mut store = lodcache::store::ObjectStoreOptions::new(url);
                if let Some(e) = &self.s3_endpoint {
                    store = store.with_endpoint(e);
                }
                if let Some(b) = self.s3_budget {
                    store = store.with_budget(b);
                }
                if let Some(t) = self.s3_timeout {
                    store = store.with_timeout(t);
                }
                builder = builder.with_object_store(store);
                if let Some(dir) = &self.local_cache {
                    builder = builder.with_cache_dir(dir);
                }
            }
            None => {}
        }
        if !matches!(self.cache, Some(CacheArg::Url(_))) {
            let stray = [
                (self.local_cache.is_some(), "--local-cache"),
                (self.s3_endpoint.is_some(), "--s3-endpoint"),
                (self.s3_budget.is_some(), "--s3-budget"),
                (self.s3_timeout.is_some(), "--s3-timeout"),
            ];
            if let Some((_, name)) = stray.iter().find(|(given, _)| *given) {
                return Err(format!(
                    "{name} needs --cache URL (s3://, gs:// or az://BUCKET/PREFIX)"
                ));
            }
        }
        if let Some(bytes) = self.memory {
            builder = builder.with_memory_budget(bytes);
        }
        if let Some(t) = decode_threads {
            builder = builder.with_decode_threads(t);
        }
        if let Some(pool) = pool {
            builder = builder.with_thread_pool(pool);
        }
        if let Some(xyz) = self.voxel_size {
            builder = builder.with_voxel_size(xyz);
        }
        let pyr = builder
            .build()
            .map_err(|e| format!("opening {}: {}", quote(scan), clean(&e.to_string())))?;
        for w in pyr.warnings() {
            crate::term::tell!("warning: {}", clean(&w));
        }
        Ok(pyr)
    }

    /// The cache folder these options name for `scan` (`None` with `--no-cache`): with an
    /// object store, the local folder in front of it.
    pub(crate) fn cache_dir(&self, scan: &Path) -> Option<PathBuf> {
        if self.no_cache {
            return None;
        }
        Some(match &self.cache {
            Some(CacheArg::Dir(dir)) => dir.clone(),
            Some(CacheArg::Url(url)) => self
                .local_cache
                .clone()
                .unwrap_or_else(|| lodcache::store::default_local_cache_dir(scan, url)),
            None => lodcache::store::default_cache_dir(scan),
        })
    }

    /// The object store URL these options name, if any.
    pub(crate) fn cache_url(&self) -> Option<&str> {
        match &self.cache {
            Some(CacheArg::Url(url)) => Some(url),
            _ => None,
        }
    }
}

/// The sentence that says a rule gives no level and which option changes it, or `None` when
/// `edge` gives at least one level for `stack`.
pub(crate) fn no_level_note(stack: &Stack, edge: u32) -> Option<String> {
    let info = stack.info();
    let side = info.width.max(info.height);
    (side <= edge).then(|| {
        let hint = (side / 2).max(1);
        format!(
            "the scan is {} x {} pixels, not above the edge of {edge}: no level is made \
             (levels are made while the larger side exceeds the edge); a smaller --edge, \
             e.g. --edge {hint}, gives levels",
            info.width, info.height
        )
    })
}

/// Parses a size in bytes with an optional unit: `4096`, `512K`, `512M`, `2G`, `1.5T`
/// (powers of 1024; `B`, `iB` and `KB`-style suffixes are accepted and mean the same).
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit = unit.trim().to_ascii_uppercase();
    let unit = unit.trim_end_matches("IB").trim_end_matches('B');
    let scale: u64 = match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit; use a number of bytes or K, M, G, T (e.g. 512M, 2G)"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size; e.g. 4096, 512M, 2G"))?;
    let bytes = value * scale as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("{text:?} is too large"));
    }
    Ok(bytes.round() as u64)
}

/// Parses a duration with an optional unit: `90` or `90s`, `500ms`, `10m`, `2h`, `1.5h`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale = match unit.trim() {
        "" | "s" | "sec" => 1.0,
        "ms" => 1e-3,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit; use ms, s, m or h (e.g. 90s, 10m)"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration; e.g. 90s, 10m"))?;
    Duration::try_from_secs_f64(value * scale).map_err(|_| format!("{text:?} is out of range"))
}

/// A list of levels, `1,2,3` on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LevelList(pub(crate) Vec<u32>);

/// Parses a list of levels: `1,2,3`.
pub(crate) fn parse_levels(text: &str) -> Result<LevelList, String> {
    text.split(',')
        .map(|s| {
            s.trim()
                .parse::<u32>()
                .map_err(|_| format!("{text:?}: levels are whole numbers like 1,2,3"))
        })
        .collect::<Result<_, _>>()
        .map(LevelList)
}

/// Parses a thread count: 1 to [`MAX_THREADS`].
pub(crate) fn parse_threads(text: &str) -> Result<usize, String> {
    let n: usize = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number"))?;
    if !(1..=MAX_THREADS).contains(&n) {
        return Err(format!("{n} threads: use 1 to {MAX_THREADS}"));
    }
    Ok(n)
}

/// Parses a voxel size `X,Y,Z` in micrometres: three finite numbers above 0.
pub(crate) fn parse_voxel_size(text: &str) -> Result<[f64; 3], String> {
    let values: Vec<Option<f64>> = text
        .split(',')
        .map(|v| {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v > 0.0)
        })
        .collect();
    match values[..] {
        [Some(x), Some(y), Some(z)] => Ok([x, y, z]),
        _ => Err(format!(
            "{text:?}: give X,Y,Z in micrometres, three numbers above 0 (e.g. 4.5,4.5,4.5)"
        )),
    }
}

/// Parses a chunk or shard shape `Z,Y,X` (e.g. `1,512,512`, `64,64,64`).
pub(crate) fn parse_chunks(text: &str) -> Result<lodcache::zarr::ChunkShape, String> {
    lodcache::zarr::ChunkShape::parse(text).map_err(|e| clean(&e.to_string()))
}

/// Parses a Zarr compression: `blosc-lz4`, `zstd`, `zstd:N` or `none`.
pub(crate) fn parse_compression(text: &str) -> Result<lodcache::zarr::Compression, String> {
    lodcache::zarr::Compression::parse(text).map_err(|e| clean(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1.5k"), Ok(1536));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("3 days").is_err());
        assert!(parse_duration("1e999s").is_err());
    }

    #[test]
    fn caches_are_folders_or_object_store_urls() {
        for url in ["s3://b/p", "gs://b/p", "az://c/p", "azure://c/p"] {
            assert_eq!(parse_cache(url.into()), Ok(CacheArg::Url(url.into())));
        }
        assert_eq!(
            parse_cache("some/dir".into()),
            Ok(CacheArg::Dir("some/dir".into()))
        );
        assert!(
            parse_cache("hdfs://b/p".into())
                .unwrap_err()
                .contains("s3:// (S3")
        );
        assert!(
            parse_cache("file:///tmp/c".into())
                .unwrap_err()
                .contains("give the folder itself")
        );
    }

    #[test]
    fn voxel_sizes_are_three_positive_numbers() {
        assert_eq!(parse_voxel_size("4.5,4.5,9"), Ok([4.5, 4.5, 9.0]));
        for bad in [
            "4.5,4.5", "1,2,3,4", "0,1,1", "-1,1,1", "a,b,c", "inf,1,1", "",
        ] {
            assert!(parse_voxel_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn thread_counts_are_capped() {
        assert_eq!(parse_threads("4"), Ok(4));
        assert!(parse_threads("0").is_err());
        assert!(parse_threads("20000").is_err());
    }
}
