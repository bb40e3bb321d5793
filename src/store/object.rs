//! The object-store tier: blobs as objects in an S3 bucket (or an S3-compatible server such as
//! SeaweedFS, MinIO or Ceph), a Google Cloud Storage bucket or an Azure Blob Storage
//! container, shared by every machine that opens the same scan. Feature `object-store`.
//!
//! # URLs and credentials
//! - `s3://bucket/prefix`: Amazon S3 or an S3-compatible server ([`ObjectStoreOptions::with_endpoint`]
//!   or `AWS_ENDPOINT_URL`); credentials from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//!   `AWS_SESSION_TOKEN` (or [`ObjectStoreOptions::with_credentials`]).
//! - `gs://bucket/prefix`: Google Cloud Storage; credentials from `GOOGLE_SERVICE_ACCOUNT`
//!   (a service-account file), `GOOGLE_SERVICE_ACCOUNT_KEY` (its JSON),
//!   `GOOGLE_APPLICATION_CREDENTIALS`, else the instance's metadata server. Another server:
//!   `GOOGLE_BASE_URL` (or `gcs_base_url` in the service-account JSON).
//! - `az://container/prefix` (or `azure://`): Azure Blob Storage; the account from
//!   `AZURE_STORAGE_ACCOUNT_NAME`, credentials from `AZURE_STORAGE_ACCOUNT_KEY`, a SAS token,
//!   a client secret, a managed identity (the other `AZURE_*` variables object_store reads).
//!   Another server: `AZURE_STORAGE_ENDPOINT` (`http://HOST:PORT/ACCOUNT`), or Azurite with
//!   `AZURE_STORAGE_USE_EMULATOR=true` (its well-known account unless one is given) at
//!   `AZURITE_BLOB_STORAGE_URL` (default `http://127.0.0.1:10000`).
//! - Any of object_store's configuration keys of the scheme may also be given in code
//!   ([`ObjectStoreOptions::with_option`]); plain HTTP is allowed when the server's address
//!   (given or from the environment) starts with `http://`.
//! - `file://` is refused: object_store's local file system cannot replace an object on
//!   condition that it is still the version read (`PutMode::Update`), which the manifest
//!   needs (see below). A local folder is the disk tier's job (`--cache DIR`).
//!
//! # Layout
//! ```text
//! <prefix>/<stack>/<lineage>/manifest.json         the sources the lineage's blobs are made from
//! <prefix>/<stack>/<lineage>/<level>/<z:06>.blob   one blob per slice (the disk tier's format)
//! ```
//! - `<prefix>` is the URL's path (`s3://bucket/prefix`, `gs://bucket/prefix`,
//!   `az://container/prefix`): one prefix serves any number of scans. The layout is the same
//!   on every service.
//! - `<stack>` (16 hex digits) is the stack's identity: slice size, sample type and naming
//!   ([`Manifest::stack_id`]).
//! - `<lineage>` (16 hex digits) is one scan among those with that identity: the hash of its
//!   sources (names, sizes, modification times and, with the content check, contents; see
//!   [`Manifest::portable`]) when it was first stored. Opening a scan picks the lineage whose
//!   manifest has the same sources, else the one sharing the most source slices with it (at
//!   least half: the same scan with some slices changed), else starts a new one.
//!
//! Keys never depend on where the scan is mounted: machines that see the same files at
//! different paths (NFS, bind mounts, links) or a copy with the same times share its blobs.
//! The sources are fingerprinted without inode numbers here, so that a copy on another file
//! system counts as the same scan (see [`Manifest::portable`]).
//!
//! # Same guarantees as the disk tier
//! - Every object read is checked ([`codec::verify`]) against the slice it should be, origin
//!   included; a damaged object is a counted miss and is deleted (and made again), a sound one
//!   made from older sources too.
//! - Blobs are created with a conditional put (`If-None-Match: *`; on Google Cloud Storage
//!   `x-goog-if-generation-match: 0`, and updates match the generation): racing writers never
//!   overwrite each other. The one that comes second reads what is there and keeps it when it
//!   is sound (sound blobs of one key and origin hold the same slice); a damaged or stale one it
//!   replaces on condition that it is still the version it read (`If-Match`).
//! - The manifest object is replaced only on condition that it is still the version read
//!   (`If-Match` on its ETag), after deleting the blobs that depend on a source slice that
//!   differs from it; an opener that loses the race reads the new manifest and does it again
//!   against that one. So every manifest written was compared with the one it replaced, and
//!   concurrent openers never lose each other's invalidations.
//! - A byte budget for the lineage (optional): past it, the least valuable blobs are deleted
//!   until they take 90% of it (lowest priority, then least recently used; recency starts from
//!   the objects' modification times). Each process enforces it over the blobs it knows of.
//! - A server that is down, slow or refusing: every request has a timeout (retries included);
//!   a failed read is a miss (the slice is then generated) and a failed write an error the
//!   storing code counts; both are counted and warned about. After a failure the tier does not
//!   ask again for a short pause ([`COOL_DOWN`]), so that requests do not each wait for a
//!   timeout while the server is down. A write is reported done only when the server said so.
//!
//! The tier's methods are synchronous: it owns a small tokio runtime that runs the requests,
//! and waits for each answer at most its timeout (it never blocks on a runtime of the caller,
//! so it may be used from any thread, async ones' blocking pools included).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::path::Path as Key;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions,
    PutPayload, RetryConfig, UpdateVersion,
};

use super::manifest::{Fingerprint, Invalidation, Manifest};
use super::{Blob, Budget, Counter, PriorityFn, Tier, TierStats};
use crate::codec::{self, BlobError};
use crate::error::{Error, Result};
use crate::geometry::SliceKey;

/// After a request failed for want of an answer, requests fail at once for this long before
/// the server is asked again.
pub const COOL_DOWN: Duration = Duration::from_secs(2);
/// Default timeout of one request, retries included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The manifest object's name within a lineage.
const MANIFEST: &str = "manifest.json";
/// A manifest object longer than this is not one of ours.
const MAX_MANIFEST_BYTES: u64 = 256 << 20;
/// Conditional writes retried this often when other writers keep winning.
const ATTEMPTS: usize = 8;

/// Where the object-store tier is and how it behaves.
#[derive(Clone)]
pub struct ObjectStoreOptions {
    /// `s3://bucket/prefix`, `gs://bucket/prefix` or `az://container/prefix` (the prefix is
    /// optional); see the [module docs](self).
    pub url: String,
    /// The server's address for S3-compatible servers (`http://127.0.0.1:8333`); path-style
    /// requests, plain HTTP allowed. `s3://` only (the other services take theirs from the
    /// environment or [`ObjectStoreOptions::with_option`]; see the [module docs](self)).
    /// Default: `None`: `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT`) when set, else Amazon S3 in the
    /// region of `AWS_REGION` / `AWS_DEFAULT_REGION`.
    pub endpoint: Option<String>,
    /// Byte budget for the scan's blobs in the store. Default: `u64::MAX` (unbounded).
    pub budget: u64,
    /// Timeout of one request, retries included. Default: [`DEFAULT_TIMEOUT`] (10 s).
    pub timeout: Duration,
    /// Access key id and secret, instead of the environment's (see
    /// [`ObjectStoreOptions::with_credentials`]).
    credentials: Option<(String, String)>,
    /// object_store configuration keys and values (see [`ObjectStoreOptions::with_option`]).
    config: Vec<(String, String)>,
    #[cfg(any(test, feature = "test-utils"))]
    hook: Option<Hook>,
}

impl std::fmt::Debug for ObjectStoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStoreOptions")
            .field("url", &self.url)
            .field("endpoint", &self.endpoint)
            .field("budget", &Budget(self.budget))
            .field("timeout", &self.timeout)
            .field(
                "credentials",
                &self
                    .credentials
                    .as_ref()
                    .map(|(id, _)| format!("{id} (secret hidden)")),
            )
            .field(
                "config",
                &self
                    .config
                    .iter()
                    .map(|(k, _)| format!("{k} (value hidden)"))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ObjectStoreOptions {
    /// Options for the store at `url` (`s3://bucket/prefix`, `gs://bucket/prefix`,
    /// `az://container/prefix`), with every default.
    pub fn new(url: impl Into<String>) -> ObjectStoreOptions {
        ObjectStoreOptions {
            url: url.into(),
            endpoint: None,
            budget: u64::MAX,
            timeout: DEFAULT_TIMEOUT,
            credentials: None,
            config: Vec::new(),
            #[cfg(any(test, feature = "test-utils"))]
            hook: None,
        }
    }

    /// Uses this S3 access key id and secret (`s3://` only; opening another service with them
    /// is refused). Default: the environment's (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`, or the other sources the AWS SDKs read).
    #[must_use]
    pub fn with_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> ObjectStoreOptions {
        self.credentials = Some((access_key_id.into(), secret_access_key.into()));
        self
    }

    /// Sets the server's address (S3-compatible servers). Default: from the environment.
    #[must_use]
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> ObjectStoreOptions {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Sets one of object_store's configuration keys of the URL's service, over the
    /// environment's: `aws_*` for `s3://`, `google_*` for `gs://` (`google_service_account_key`,
    /// `google_base_url`, ...), `azure_*` for `az://` (`azure_storage_account_name`,
    /// `azure_storage_account_key`, `azure_storage_endpoint`, ...). An unknown key is an error
    /// when the tier opens. Default: none.
    #[must_use]
    pub fn with_option(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> ObjectStoreOptions {
        self.config.push((key.into(), value.into()));
        self
    }

    /// Sets the byte budget. Default: `u64::MAX` (unbounded).
    #[must_use]
    pub fn with_budget(mut self, budget: u64) -> ObjectStoreOptions {
        self.budget = budget;
        self
    }

    /// Sets the timeout of one request. Default: [`DEFAULT_TIMEOUT`].
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> ObjectStoreOptions {
        self.timeout = timeout;
        self
    }

    /// Calls `hook` at the [`HookPoint`]s, for tests that force a race (feature `test-utils`).
    #[cfg(any(test, feature = "test-utils"))]
    #[must_use]
    pub fn with_hook(mut self, hook: Hook) -> ObjectStoreOptions {
        self.hook = Some(hook);
        self
    }
}

/// Where a test hook is called (feature `test-utils`).
#[cfg(any(test, feature = "test-utils"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HookPoint {
    /// An opener compared the manifest object with its sources and deleted what changed; it is
    /// about to write its manifest on condition that the object is still the version it read.
    BeforeManifestWrite,
}

/// A test hook (feature `test-utils`): called on the thread doing the work, which waits for it.
#[cfg(any(test, feature = "test-utils"))]
pub type Hook = Arc<dyn Fn(HookPoint) + Send + Sync>;

/// Counters of the object-store tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectStoreStats {
    /// Reads that found a sound blob.
    pub hits: u64,
    /// Reads that found none (damaged, stale and failed reads included).
    pub misses: u64,
    /// Damaged objects found (and deleted).
    pub corrupt: u64,
    /// Sound objects made from older sources found (and deleted).
    pub stale: u64,
    /// Blobs created or replaced.
    pub writes: u64,
    /// Writes that failed (nothing was stored).
    pub write_errors: u64,
    /// Reads that failed (no answer, refused): served by generating instead.
    pub read_errors: u64,
    /// Requests that failed for want of an answer, or were not sent during a cool-down.
    pub unavailable: u64,
    /// Blobs deleted to stay within the budget.
    pub evictions: u64,
    /// Blobs deleted on open because a source slice they depend on changed.
    pub invalidated: u64,
    /// Bytes of the blobs known to be stored.
    pub bytes: u64,
    /// Blobs known to be stored.
    pub objects: u64,
    /// The byte budget.
    pub budget: Budget,
}

#[derive(Debug, Default)]
struct Counters {
    hits: Counter,
    misses: Counter,
    corrupt: Counter,
    stale: Counter,
    writes: Counter,
    write_errors: Counter,
    read_errors: Counter,
    unavailable: Counter,
    evictions: Counter,
    invalidated: Counter,
}

#[derive(Debug, Clone, Copy)]
struct IndexEntry {
    bytes: u64,
    last_used: u64,
}

/// The blobs this process knows to be stored.
#[derive(Debug, Default)]
struct Index {
    entries: HashMap<SliceKey, IndexEntry>,
    bytes: u64,
    clock: u64,
}

impl Index {
    fn touch(&mut self, key: SliceKey, bytes: u64) {
        self.clock += 1;
        let entry = IndexEntry {
            bytes,
            last_used: self.clock,
        };
        if let Some(old) = self.entries.insert(key, entry) {
            self.bytes -= old.bytes;
        }
        self.bytes += bytes;
    }

    fn forget(&mut self, key: SliceKey) {
        if let Some(old) = self.entries.remove(&key) {
            self.bytes -= old.bytes;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why a request did not succeed.
#[derive(Debug)]
enum Failure {
    /// No such object.
    NotFound,
    /// A conditional write found another version (or an object where none was expected).
    Conflict,
    /// The server refused the credentials or the operation.
    Denied(String),
    /// No answer (down, slow, unreachable), an error of the server, or a cool-down.
    Down(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::NotFound => f.write_str("no such object"),
            Failure::Conflict => f.write_str("another writer changed it first"),
            Failure::Denied(why) => write!(f, "access refused: {why}"),
            Failure::Down(why) => write!(f, "{why}"),
        }
    }
}

/// The service a cache URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    S3,
    Gcs,
    Azure,
}

impl Service {
    /// Where the credentials come from, for a refusal's message.
    fn credentials_hint(self) -> &'static str {
        match self {
            Service::S3 => {
                "check the credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, \
                 AWS_SESSION_TOKEN"
            }
            Service::Gcs => {
                "check the credentials: GOOGLE_SERVICE_ACCOUNT, GOOGLE_SERVICE_ACCOUNT_KEY, \
                 GOOGLE_APPLICATION_CREDENTIALS"
            }
            Service::Azure => {
                "check the credentials: AZURE_STORAGE_ACCOUNT_NAME, AZURE_STORAGE_ACCOUNT_KEY \
                 (or AZURE_STORAGE_SAS_KEY, AZURE_STORAGE_CLIENT_SECRET, ...)"
            }
        }
    }

    /// What the service calls a bucket.
    fn bucket_word(self) -> &'static str {
        match self {
            Service::S3 | Service::Gcs => "bucket",
            Service::Azure => "container",
        }
    }
}

fn classify(e: object_store::Error, service: Service) -> Failure {
    let denied = |text: &str| {
        Failure::Denied(format!(
            "{} ({})",
            s3_reason(text),
            service.credentials_hint()
        ))
    };
    match e {
        object_store::Error::NotFound { .. } => Failure::NotFound,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
            Failure::Conflict
        }
        object_store::Error::PermissionDenied { source, .. }
        | object_store::Error::Unauthenticated { source, .. } => denied(&error_chain(&*source)),
        // Listing reports every HTTP status as a generic error: read the status from its text.
        other => {
            let text = error_chain(&other);
            if text.contains("status code: 403") || text.contains("status code: 401") {
                denied(&text)
            } else if text.contains("status code: 404") {
                Failure::NotFound
            } else {
                Failure::Down(text)
            }
        }
    }
}

/// The S3 (or Azure) error code and message of an error's text (`SignatureDoesNotMatch: The
/// request signature ...`), else the whole text.
fn s3_reason(text: &str) -> String {
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = start + text[start..].find(&format!("</{name}>"))?;
        Some(&text[start..end])
    };
    match (tag("Code"), tag("Message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        _ => text.to_string(),
    }
}

/// An error and its sources, one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text.replace('\n', " ")
}

/// An object as read: its bytes and version, or a length no object of its kind can have.
enum Fetched {
    Bytes(Blob, UpdateVersion),
    TooLong(u64),
}

/// The local cache folder that stays in front of the store at `url` for the stack in
/// `stack_dir` when none is given: a per-user folder,
/// `$XDG_CACHE_HOME/lodcache/<name>-<hash of the stack's absolute path and the URL>`
/// (`~/.cache` when `XDG_CACHE_HOME` is unset). Never the stack folder: a scan on shared
/// storage would otherwise get one local folder for every machine. On a cluster, point
/// `XDG_CACHE_HOME` (or the folder given) at the node's local disk.
pub fn default_local_cache_dir(
    stack_dir: impl AsRef<std::path::Path>,
    url: &str,
) -> std::path::PathBuf {
    super::disk::user_cache_dir_for(stack_dir.as_ref(), url.as_bytes())
}

/// The parts of a cache URL.
#[derive(Debug)]
struct Parsed {
    service: Service,
    /// The URL's scheme as given (`s3`, `gs`, `az`, `azure`).
    scheme: &'static str,
    bucket: String,
    prefix: Key,
}

/// Parses `s3://bucket/prefix`, `gs://bucket/prefix` or `az://container/prefix`.
fn parse_url(url: &str) -> Result<Parsed> {
    let bad = |why: &str| Error::invalid("cache URL", format!("{url:?}: {why}"));
    const USE: &str = "use s3://bucket/prefix (S3 and S3-compatible servers), gs://bucket/prefix \
                       (Google Cloud Storage) or az://container/prefix (Azure Blob Storage)";
    let schemes = [
        ("s3", Service::S3),
        ("gs", Service::Gcs),
        ("az", Service::Azure),
        ("azure", Service::Azure),
    ];
    let Some((scheme, service, rest)) = schemes.iter().find_map(|&(scheme, service)| {
        let rest = url.strip_prefix(scheme)?.strip_prefix("://")?;
        Some((scheme, service, rest))
    }) else {
        let scheme = url.split("://").next().filter(|_| url.contains("://"));
        return Err(match scheme {
            Some("file") => bad(
                "file:// is not supported: a local file system cannot replace an object on \
                 condition that it is still the version read, which the shared manifest needs; \
                 for a cache on this machine give a folder instead (the disk tier)",
            ),
            Some(s) => bad(&format!("the {s}:// scheme is not supported; {USE}")),
            None => bad(&format!("not a URL; {USE}")),
        });
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let edges_ok = |b: &str| {
        b.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && b.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
    };
    let chars_ok = |b: &str, extra: &[u8]| {
        b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || extra.contains(&c))
    };
    let (bucket_ok, rule) = match service {
        Service::S3 => (
            (3..=63).contains(&bucket.len()) && chars_ok(bucket, b"-.") && edges_ok(bucket),
            "3 to 63 lower-case letters, digits, '-' and '.'",
        ),
        Service::Gcs => (
            (3..=222).contains(&bucket.len())
                && chars_ok(bucket, b"-._")
                && edges_ok(bucket)
                && bucket.split('.').all(|p| (1..=63).contains(&p.len())),
            "3 to 63 lower-case letters, digits, '-', '_' and '.'; up to 222 with dots, at \
             most 63 between two",
        ),
        Service::Azure => (
            (3..=63).contains(&bucket.len())
                && chars_ok(bucket, b"-")
                && edges_ok(bucket)
                && !bucket.contains("--"),
            "3 to 63 lower-case letters, digits and single '-'",
        ),
    };
    if !bucket_ok {
        return Err(bad(&format!(
            "{bucket:?} is not a {} name ({rule})",
            service.bucket_word()
        )));
    }
    let parts: Vec<&str> = prefix.split('/').filter(|p| !p.is_empty()).collect();
    for p in &parts {
        let ok = *p != "."
            && *p != ".."
            && p.chars().all(|c| !c.is_control() && c != '\\')
            && !p.contains('*');
        if !ok {
            return Err(bad(&format!("{p:?} is not allowed in the prefix")));
        }
    }
    Ok(Parsed {
        service,
        scheme,
        bucket: bucket.to_string(),
        prefix: Key::from_iter(parts.iter().copied()),
    })
}

/// The value of `key` among `options`' configuration, else of the first of `vars` set.
fn setting(options: &ObjectStoreOptions, keys: &[&str], vars: &[&str]) -> Option<String> {
    options
        .config
        .iter()
        .rev()
        .find(|(k, _)| keys.contains(&k.to_ascii_lowercase().as_str()))
        .map(|(_, v)| v.clone())
        .or_else(|| vars.iter().find_map(|v| std::env::var(v).ok()))
        .filter(|v| !v.is_empty())
}

/// An error for a configuration key `key` that `service` does not know.
fn unknown_key(url: &str, key: &str, service: Service, why: impl std::fmt::Display) -> Error {
    let prefix = match service {
        Service::S3 => "aws_",
        Service::Gcs => "google_",
        Service::Azure => "azure_",
    };
    Error::invalid(
        "object store option",
        format!("{key:?} for {url:?}: {why} (the keys of this service start with {prefix})"),
    )
}

/// The store at `options`' URL, its service, its prefix, and the runtime that runs its
/// requests.
fn connect(
    options: &ObjectStoreOptions,
) -> Result<(Arc<dyn ObjectStore>, Service, Key, tokio::runtime::Runtime)> {
    let Parsed {
        service,
        bucket,
        prefix,
        ..
    } = parse_url(&options.url)?;
    if options.timeout.is_zero() {
        return Err(Error::invalid(
            "object store timeout",
            "0; it must be positive",
        ));
    }
    if service != Service::S3 {
        if let Some(e) = &options.endpoint {
            return Err(Error::invalid(
                "S3 endpoint",
                format!(
                    "{e:?} given for {:?}: the endpoint option is for s3:// only; set \
                     GOOGLE_BASE_URL for gs://, AZURE_STORAGE_ENDPOINT (or \
                     AZURE_STORAGE_USE_EMULATOR=true and AZURITE_BLOB_STORAGE_URL) for az://",
                    options.url
                ),
            ));
        }
        if options.credentials.is_some() {
            return Err(Error::invalid(
                "object store credentials",
                format!(
                    "an S3 access key given for {:?}: gs:// and az:// take theirs from the \
                     environment or from their configuration keys (with_option)",
                    options.url
                ),
            ));
        }
    }
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(500),
            base: 2.0,
        },
        max_retries: 2,
        retry_timeout: options.timeout,
    };
    let client = |endpoint: Option<&str>| {
        ClientOptions::new()
            .with_timeout(options.timeout)
            .with_connect_timeout(options.timeout.min(Duration::from_secs(5)))
            .with_allow_http(endpoint.is_some_and(|e| e.starts_with("http://")))
    };
    let configuring = |e: object_store::Error| Error::ObjectStore {
        url: options.url.clone(),
        action: "configuring the client".into(),
        reason: error_chain(&e),
    };
    let check_endpoint = |what: &'static str, e: &str| {
        if e.starts_with("http://") || e.starts_with("https://") {
            Ok(())
        } else {
            Err(Error::invalid(
                what,
                format!("{e:?}: use http://HOST:PORT or https://HOST"),
            ))
        }
    };
    let store: Arc<dyn ObjectStore> = match service {
        Service::S3 => {
            let endpoint = options
                .endpoint
                .clone()
                .or_else(|| {
                    setting(
                        options,
                        &["aws_endpoint", "aws_endpoint_url", "endpoint"],
                        &[],
                    )
                })
                .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
                .or_else(|| std::env::var("AWS_ENDPOINT").ok())
                .filter(|e| !e.is_empty());
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry)
                .with_client_options(client(endpoint.as_deref()));
            for (k, v) in &options.config {
                let key: AmazonS3ConfigKey = k
                    .to_ascii_lowercase()
                    .parse()
                    .map_err(|e| unknown_key(&options.url, k, service, e))?;
                builder = builder.with_config(key, v);
            }
            if let Some((id, secret)) = &options.credentials {
                builder = builder
                    .with_access_key_id(id.clone())
                    .with_secret_access_key(secret.clone());
            }
            if let Some(e) = &endpoint {
                check_endpoint("S3 endpoint", e)?;
                builder = builder.with_endpoint(e.clone());
            }
            Arc::new(builder.build().map_err(configuring)?)
        }
        Service::Gcs => {
            let base = setting(
                options,
                &["google_base_url", "base_url"],
                &["GOOGLE_BASE_URL"],
            );
            if let Some(e) = &base {
                check_endpoint("Google Cloud Storage base URL", e)?;
            }
            let mut builder = GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry)
                .with_client_options(client(base.as_deref()));
            for (k, v) in &options.config {
                let key: GoogleConfigKey = k
                    .to_ascii_lowercase()
                    .parse()
                    .map_err(|e| unknown_key(&options.url, k, service, e))?;
                builder = builder.with_config(key, v);
            }
            Arc::new(builder.build().map_err(configuring)?)
        }
        Service::Azure => {
            let endpoint = setting(
                options,
                &["azure_storage_endpoint", "azure_endpoint", "endpoint"],
                &["AZURE_STORAGE_ENDPOINT", "AZURE_ENDPOINT"],
            );
            if let Some(e) = &endpoint {
                check_endpoint("Azure endpoint", e)?;
            }
            let mut builder = MicrosoftAzureBuilder::from_env()
                .with_container_name(bucket)
                .with_retry(retry)
                .with_client_options(client(endpoint.as_deref()));
            for (k, v) in &options.config {
                let key: AzureConfigKey = k
                    .to_ascii_lowercase()
                    .parse()
                    .map_err(|e| unknown_key(&options.url, k, service, e))?;
                builder = builder.with_config(key, v);
            }
            Arc::new(builder.build().map_err(configuring)?)
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("lodcache-object-store")
        .enable_all()
        .build()
        .map_err(|e| Error::ObjectStore {
            url: options.url.clone(),
            action: "starting the client's threads".into(),
            reason: e.to_string(),
        })?;
    Ok((store, service, prefix, runtime))
}

struct Inner {
    url: String,
    service: Service,
    store: Arc<dyn ObjectStore>,
    /// Runs the requests; taken (and shut down without waiting) on drop.
    runtime: Option<tokio::runtime::Runtime>,
    /// `<prefix>/<stack>/<lineage>`.
    root: Key,
    fingerprint: Fingerprint,
    budget: u64,
    timeout: Duration,
    index: Mutex<Index>,
    counters: Counters,
    warnings: Mutex<Vec<String>>,
    priority: RwLock<Option<PriorityFn>>,
    /// Until when requests fail at once after a failure for want of an answer.
    cool_down: Mutex<Option<Instant>>,
    /// Set while the server is known to be down (for one warning per outage).
    down: AtomicBool,
    first_write_error: Mutex<Option<String>>,
    /// The sources this tier vouches for (its lineage's manifest as this process wrote or read it).
    manifest: Mutex<Manifest>,
    #[cfg(any(test, feature = "test-utils"))]
    hook: Option<Hook>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Never waits (and never panics inside an async context): requests still running are
        // abandoned; every one the tier waited for has finished or timed out already.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Blobs as objects in an S3 bucket, shared by every machine that opens the scan; see the
/// [module docs](self). Goes behind the disk tier ([`crate::PyramidBuilder::with_cache_url`]).
///
/// Cheap to clone; clones share everything. `Send + Sync`.
#[derive(Clone)]
pub struct ObjectStoreTier {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ObjectStoreTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStoreTier")
            .field("url", &self.inner.url)
            .field("root", &self.inner.root.as_ref())
            .field("budget", &Budget(self.inner.budget))
            .finish()
    }
}

/// What a manifest object holds, and its version.
struct Read {
    manifest: Option<Manifest>,
    version: Option<UpdateVersion>,
}

impl ObjectStoreTier {
    /// Opens the store of `options` for the stack whose sources `manifest` describes
    /// (fingerprinted as [`Manifest::portable`] makes them), checking blobs against
    /// `fingerprint` (made from the same manifest, shared with the other tiers): picks the
    /// scan's lineage, deletes the blobs that depend on source slices changed since the
    /// lineage's manifest was written, writes the manifest (conditionally) and lists the
    /// blobs stored.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a URL or endpoint that is not one; [`Error::ObjectStore`]
    /// when the store refuses the credentials, has no such bucket, or does not answer within
    /// the timeout (the message says which).
    pub fn open(
        options: &ObjectStoreOptions,
        manifest: &Manifest,
        fingerprint: Fingerprint,
    ) -> Result<ObjectStoreTier> {
        let (store, service, prefix, runtime) = connect(options)?;
        let current = manifest.clone().portable();
        let stack_dir = Key::from_iter(
            prefix
                .parts()
                .map(|p| p.as_ref().to_string())
                .chain([format!("{:016x}", current.stack_id())]),
        );
        let mut tier = ObjectStoreTier {
            inner: Arc::new(Inner {
                url: options.url.clone(),
                service,
                store,
                runtime: Some(runtime),
                root: stack_dir.clone(),
                fingerprint,
                budget: options.budget,
                timeout: options.timeout,
                index: Mutex::new(Index::default()),
                counters: Counters::default(),
                warnings: Mutex::new(Vec::new()),
                priority: RwLock::new(None),
                cool_down: Mutex::new(None),
                down: AtomicBool::new(false),
                first_write_error: Mutex::new(None),
                manifest: Mutex::new(current.clone()),
                #[cfg(any(test, feature = "test-utils"))]
                hook: options.hook.clone(),
            }),
        };
        let lineage = tier.choose_lineage(&stack_dir, &current)?;
        // Only this function holds the Arc yet.
        if let Some(inner) = Arc::get_mut(&mut tier.inner) {
            inner.root = stack_dir.clone().join(lineage.as_str());
        }
        tier.take_over(&current)?;
        let listed = tier
            .list_blobs()
            .map_err(|f| tier.error("listing the blobs", f))?;
        {
            let mut index = lock(&tier.inner.index);
            let mut listed: Vec<_> = listed
                .into_iter()
                .filter(|(k, ..)| tier.inner.fingerprint.level(*k).is_some())
                .collect();
            // Oldest first, so that recency order starts as modification order.
            listed.sort_by_key(|(_, _, modified)| *modified);
            for (key, bytes, _) in listed {
                index.touch(key, bytes);
            }
        }
        tier.enforce_budget();
        Ok(tier)
    }

    /// The store's URL, as given.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The scan's place in the store: `s3://bucket/prefix/<stack>/<lineage>` (the URL's
    /// scheme and bucket or container).
    pub fn location(&self) -> String {
        match parse_url(&self.inner.url) {
            Ok(p) => format!("{}://{}/{}", p.scheme, p.bucket, self.inner.root),
            Err(_) => self.inner.root.to_string(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> ObjectStoreStats {
        let c = &self.inner.counters;
        let (bytes, objects) = {
            let index = lock(&self.inner.index);
            (index.bytes, index.entries.len() as u64)
        };
        ObjectStoreStats {
            hits: c.hits.get(),
            misses: c.misses.get(),
            corrupt: c.corrupt.get(),
            stale: c.stale.get(),
            writes: c.writes.get(),
            write_errors: c.write_errors.get(),
            read_errors: c.read_errors.get(),
            unavailable: c.unavailable.get(),
            evictions: c.evictions.get(),
            invalidated: c.invalidated.get(),
            bytes,
            objects,
            budget: Budget(self.inner.budget),
        }
    }

    /// Blobs of `level` known to be stored, and their bytes.
    pub fn level_usage(&self, level: u32) -> (u64, u64) {
        let index = lock(&self.inner.index);
        index
            .entries
            .iter()
            .filter(|(k, _)| k.level == level)
            .fold((0, 0), |(n, b), (_, e)| (n + 1, b + e.bytes))
    }

    /// The first failed write's message (the one that says why: the later ones may only say
    /// that the store was not asked again), if any write failed.
    pub fn first_write_error(&self) -> Option<String> {
        lock(&self.inner.first_write_error).clone()
    }

    /// Warnings (failed requests, damaged objects), oldest first.
    pub fn warnings(&self) -> Vec<String> {
        lock(&self.inner.warnings).clone()
    }

    /// Sets how valuable each blob is to keep under the budget (higher stays longer; ties go
    /// by recency). Default: every blob 0, so plain least-recently-used.
    pub fn set_priority(&self, priority: PriorityFn) {
        *self
            .inner
            .priority
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(priority);
    }

    fn warn(&self, message: String) {
        log::warn!("lodcache: {message}");
        let mut w = lock(&self.inner.warnings);
        if w.len() < 100 {
            w.push(message);
        }
    }

    /// The error of a failed request: the store, what was being done, why.
    fn error(&self, action: impl Into<String>, failure: Failure) -> Error {
        Error::ObjectStore {
            url: self.inner.url.clone(),
            action: action.into(),
            reason: failure.to_string(),
        }
    }

    fn blob_key(&self, key: SliceKey) -> Key {
        self.inner
            .root
            .clone()
            .join(key.level.to_string())
            .join(format!("{:06}.blob", key.z))
    }

    /// Runs one request on the tier's runtime and waits for it, at most the timeout. During a
    /// cool-down after a request without answer, fails at once.
    fn call<T, F>(&self, request: F) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: Future<Output = object_store::Result<T>> + Send + 'static,
    {
        let inner = &self.inner;
        if let Some(until) = *lock(&inner.cool_down)
            && Instant::now() < until
        {
            inner.counters.unavailable.incr();
            return Err(Failure::Down(format!(
                "not asked: the server did not answer moments ago (asking again within {} s)",
                COOL_DOWN.as_secs()
            )));
        }
        let Some(runtime) = inner.runtime.as_ref() else {
            return Err(Failure::Down("the client has stopped".into()));
        };
        let timeout = inner.timeout;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let task = runtime.spawn(async move {
            let answer = tokio::time::timeout(timeout, request).await;
            let _ = tx.send(answer);
        });
        // The runtime's timer ends the request; this wait is the backstop should the runtime
        // itself be stuck.
        let answer = rx.recv_timeout(timeout + Duration::from_secs(1));
        let failure = match answer {
            Ok(Ok(Ok(value))) => {
                *lock(&inner.cool_down) = None;
                if inner.down.swap(false, Ordering::Relaxed) {
                    log::info!("lodcache: object store {:?} answers again", inner.url);
                }
                return Ok(value);
            }
            Ok(Ok(Err(e))) => match classify(e, inner.service) {
                // The client's own timer ended it.
                Failure::Down(why) if why.contains("timed out") => Failure::Down(format!(
                    "no answer within {:.1} s (the server is down, unreachable or \
                     overloaded): {why}",
                    timeout.as_secs_f64()
                )),
                other => other,
            },
            Ok(Err(_)) | Err(_) => {
                task.abort();
                Failure::Down(format!(
                    "no answer within {:.1} s (the server is down, unreachable or overloaded)",
                    timeout.as_secs_f64()
                ))
            }
        };
        if let Failure::Down(why) = &failure {
            inner.counters.unavailable.incr();
            *lock(&inner.cool_down) = Some(Instant::now() + COOL_DOWN);
            if !inner.down.swap(true, Ordering::Relaxed) {
                self.warn(format!(
                    "object store {:?} failed: {why}; slices are generated instead of read from \
                     it, and what is made is not stored there until it answers again",
                    inner.url
                ));
            }
        }
        Err(failure)
    }

    /// The scan's lineage among those of its stack identity (see the module docs).
    fn choose_lineage(&self, stack_dir: &Key, current: &Manifest) -> Result<String> {
        let own = format!("{:016x}", current.sources_id());
        let store = Arc::clone(&self.inner.store);
        let dir = stack_dir.clone();
        let listed = self
            .call(async move { store.list_with_delimiter(Some(&dir)).await })
            .map_err(|f| match f {
                Failure::NotFound => Error::ObjectStore {
                    url: self.inner.url.clone(),
                    action: format!("listing {:?}", stack_dir.as_ref()),
                    reason: format!(
                        "no such {} (create it first, or check the URL)",
                        self.inner.service.bucket_word()
                    ),
                },
                other => self.error(format!("listing {:?}", stack_dir.as_ref()), other),
            })?;
        let lineages: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .filter(|n| n.len() == 16 && n.bytes().all(|b| b.is_ascii_hexdigit()))
            .collect();
        if lineages.contains(&own) {
            return Ok(own);
        }
        let mut best: Option<(usize, String)> = None;
        for lineage in lineages {
            let key = stack_dir.clone().join(lineage.as_str()).join(MANIFEST);
            let Some(old) = self.read_manifest(&key)?.manifest else {
                continue;
            };
            let same = old
                .sources
                .iter()
                .zip(&current.sources)
                .filter(|(a, b)| a == b)
                .count();
            if best.as_ref().is_none_or(|(n, _)| same > *n) {
                best = Some((same, lineage));
            }
        }
        Ok(match best {
            Some((same, lineage)) if same > 0 && 2 * same >= current.sources.len() => lineage,
            _ => own,
        })
    }

    /// The manifest object at `key` and its version (`None` when there is none or it is not a
    /// manifest of this layout).
    fn read_manifest(&self, key: &Key) -> Result<Read> {
        let store = Arc::clone(&self.inner.store);
        let at = key.clone();
        let fetched = self.call(async move {
            let got = store.get_opts(&at, GetOptions::default()).await?;
            if got.meta.size > MAX_MANIFEST_BYTES {
                return Ok(Fetched::TooLong(got.meta.size));
            }
            let version = UpdateVersion {
                e_tag: got.meta.e_tag.clone(),
                version: got.meta.version.clone(),
            };
            Ok(Fetched::Bytes(Arc::from(&got.bytes().await?[..]), version))
        });
        let name = std::path::PathBuf::from(key.as_ref());
        match fetched {
            Ok(Fetched::Bytes(bytes, version)) => {
                let manifest = match Manifest::from_bytes(&bytes, &name) {
                    Ok(m) => m,
                    Err(e) => {
                        self.warn(format!("{e}; its lineage's blobs are made again"));
                        None
                    }
                };
                Ok(Read {
                    manifest,
                    version: Some(version),
                })
            }
            Ok(Fetched::TooLong(n)) => {
                self.warn(format!(
                    "{:?} is {n} bytes, too long for a manifest; its lineage's blobs are made \
                     again",
                    key.as_ref()
                ));
                Ok(Read {
                    manifest: None,
                    version: None,
                })
            }
            Err(Failure::NotFound) => Ok(Read {
                manifest: None,
                version: None,
            }),
            Err(f) => Err(self.error(format!("reading {:?}", key.as_ref()), f)),
        }
    }

    /// Every blob object of the lineage: key, bytes, modification time.
    fn list_blobs(&self) -> Result<Vec<(SliceKey, u64, SystemTime)>, Failure> {
        let store = Arc::clone(&self.inner.store);
        let root = self.inner.root.clone();
        let top = self.call(async move { store.list_with_delimiter(Some(&root)).await })?;
        let mut found = Vec::new();
        for dir in top.common_prefixes {
            let Some(level) = dir
                .filename()
                .filter(|n| !n.starts_with('0') || *n == "0")
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let store = Arc::clone(&self.inner.store);
            let listed = self.call(async move { store.list_with_delimiter(Some(&dir)).await })?;
            for object in listed.objects {
                let Some(z) = object
                    .location
                    .filename()
                    .and_then(|n| n.strip_suffix(".blob"))
                    .filter(|s| s.len() >= 6 && s.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|s| s.parse::<u32>().ok())
                else {
                    continue;
                };
                found.push((
                    SliceKey::new(level, z),
                    object.size,
                    SystemTime::from(object.last_modified),
                ));
            }
        }
        Ok(found)
    }

    /// Makes the lineage's manifest `current`: reads it, deletes the blobs that depend on a
    /// source slice that differs, then writes `current` on condition that the object is still
    /// the version read; when another opener wrote first, does it all again against theirs.
    fn take_over(&self, current: &Manifest) -> Result<()> {
        let key = self.inner.root.clone().join(MANIFEST);
        let levels = self.inner.fingerprint.levels();
        for _ in 0..ATTEMPTS {
            let read = self.read_manifest(&key)?;
            if read.manifest.as_ref() == Some(current) {
                return Ok(());
            }
            let invalidation = match &read.manifest {
                Some(old) => old.invalidated_by(current, &levels),
                None if read.version.is_some() => {
                    Invalidation::All("the manifest object is damaged".into())
                }
                // No manifest: a new lineage, or one whose manifest was deleted (its blobs
                // are then of unknown sources).
                None => Invalidation::All("the lineage has no manifest".into()),
            };
            if invalidation != Invalidation::None {
                let listed = self
                    .list_blobs()
                    .map_err(|f| self.error("listing the blobs", f))?;
                for (k, ..) in listed {
                    let doomed = match &invalidation {
                        Invalidation::None => false,
                        Invalidation::All(_) => true,
                        Invalidation::Some(keys) => keys.contains(&k),
                    };
                    if doomed {
                        self.delete(k).map_err(|f| {
                            self.error(format!("deleting {:?}", self.blob_key(k).as_ref()), f)
                        })?;
                        self.inner.counters.invalidated.incr();
                    }
                }
            }
            #[cfg(any(test, feature = "test-utils"))]
            if let Some(hook) = &self.inner.hook {
                hook(HookPoint::BeforeManifestWrite);
            }
            // Only over the version read: another opener's manifest written since makes this
            // write fail, and the loop compares with theirs.
            let mode = match read.version {
                Some(v) => PutMode::Update(v),
                None => PutMode::Create,
            };
            match self.put_object(&key, current.to_bytes(), mode) {
                Ok(()) => return Ok(()),
                Err(Failure::Conflict) => continue,
                Err(f) => return Err(self.error(format!("writing {:?}", key.as_ref()), f)),
            }
        }
        Err(self.error(
            format!("writing {:?}", key.as_ref()),
            Failure::Down(format!(
                "other openers kept changing it ({ATTEMPTS} conditional writes lost)"
            )),
        ))
    }

    fn put_object(&self, key: &Key, bytes: Vec<u8>, mode: PutMode) -> Result<(), Failure> {
        let store = Arc::clone(&self.inner.store);
        let at = key.clone();
        self.call(async move {
            store
                .put_opts(&at, PutPayload::from(bytes), PutOptions::from(mode))
                .await
        })
        .map(|_| ())
    }

    fn delete(&self, key: SliceKey) -> Result<(), Failure> {
        let store = Arc::clone(&self.inner.store);
        let at = self.blob_key(key);
        lock(&self.inner.index).forget(key);
        match self.call(async move { store.delete(&at).await }) {
            Ok(()) | Err(Failure::NotFound) => Ok(()),
            Err(f) => Err(f),
        }
    }

    /// The blob object of `key` as stored, with its version.
    fn fetch(&self, key: SliceKey) -> Result<Option<Fetched>, Failure> {
        let Some(level) = self.inner.fingerprint.level(key) else {
            return Ok(None);
        };
        let longest = codec::max_blob_len(&level);
        let store = Arc::clone(&self.inner.store);
        let at = self.blob_key(key);
        match self.call(async move {
            let got = store.get_opts(&at, GetOptions::default()).await?;
            // An object longer than any blob of this slice is not read at all.
            if got.meta.size > longest {
                return Ok(Fetched::TooLong(got.meta.size));
            }
            let version = UpdateVersion {
                e_tag: got.meta.e_tag.clone(),
                version: got.meta.version.clone(),
            };
            Ok(Fetched::Bytes(Arc::from(&got.bytes().await?[..]), version))
        }) {
            Ok(f) => Ok(Some(f)),
            Err(Failure::NotFound) => Ok(None),
            Err(f) => Err(f),
        }
    }

    /// Counts and deletes a damaged (or, when `stale`, older) blob object.
    fn discard(&self, key: SliceKey, reason: &str, stale: bool) {
        if stale {
            self.inner.counters.stale.incr();
        } else {
            self.inner.counters.corrupt.incr();
        }
        let name = self.blob_key(key);
        if let Err(f) = self.delete(key) {
            self.warn(format!("deleting {:?}: {f}", name.as_ref()));
        }
        if stale {
            log::info!(
                "lodcache: object {:?} was made from other sources ({reason}): deleted, will be \
                 rebuilt",
                name.as_ref()
            );
        } else {
            self.warn(format!(
                "damaged object {:?} in {:?} ({reason}): deleted, will be rebuilt",
                name.as_ref(),
                self.inner.url
            ));
        }
    }

    /// The blob of `key` if the store holds a sound one; damaged and stale objects are counted,
    /// deleted and reported as a miss, and so is a failed read (then counted as such).
    pub fn get(&self, key: SliceKey) -> Option<Blob> {
        let counters = &self.inner.counters;
        let Some(id) = self.inner.fingerprint.id(key) else {
            counters.misses.incr();
            return None;
        };
        let fetched = match self.fetch(key) {
            Ok(Some(f)) => f,
            Ok(None) => {
                lock(&self.inner.index).forget(key);
                counters.misses.incr();
                return None;
            }
            Err(f) => {
                if !matches!(f, Failure::Down(_)) {
                    self.warn(format!("reading {:?}: {f}", self.blob_key(key).as_ref()));
                }
                counters.read_errors.incr();
                counters.misses.incr();
                return None;
            }
        };
        let bytes = match fetched {
            Fetched::Bytes(bytes, _) => bytes,
            Fetched::TooLong(n) => {
                let longest = codec::max_blob_len(&id.level);
                self.discard(
                    key,
                    &format!("{n} bytes, more than a blob of it can hold ({longest})"),
                    false,
                );
                counters.misses.incr();
                return None;
            }
        };
        match codec::verify(&bytes, &id) {
            Ok(_) => {
                lock(&self.inner.index).touch(key, bytes.len() as u64);
                counters.hits.incr();
                Some(bytes)
            }
            Err(e @ BlobError::Origin { .. }) => {
                self.discard(key, &e.to_string(), true);
                counters.misses.incr();
                None
            }
            Err(e) => {
                self.discard(key, &e.to_string(), false);
                counters.misses.incr();
                None
            }
        }
    }

    /// Stores `blob` as the blob of `key` with a conditional put (created only where no object
    /// is). When another writer created it first, its object is kept if it is sound (a sound
    /// blob of the key holds the same slice) and replaced otherwise, on condition that it is
    /// still the version read. Does nothing when the blob alone exceeds the budget.
    ///
    /// # Errors
    /// [`Error::ObjectStore`] when the store failed or refused the write (counted and warned
    /// about; nothing was stored); [`Error::InvalidArgument`] for a key outside the stack.
    pub fn put(&self, key: SliceKey, blob: &[u8]) -> Result<()> {
        if blob.len() as u64 > self.inner.budget {
            return Ok(());
        }
        let Some(id) = self.inner.fingerprint.id(key) else {
            return Err(Error::invalid(
                "blob key",
                format!("{key} is outside the stack's levels"),
            ));
        };
        let at = self.blob_key(key);
        let mut mode = PutMode::Create;
        for _ in 0..ATTEMPTS {
            match self.put_object(&at, blob.to_vec(), mode) {
                Ok(()) => {
                    self.inner.counters.writes.incr();
                    self.kept(key, blob.len() as u64);
                    return Ok(());
                }
                Err(Failure::Conflict) => {}
                Err(f) => return Err(self.write_failed(&at, f)),
            }
            // Someone else wrote it first: keep theirs if it is sound.
            match self.fetch(key) {
                Ok(Some(Fetched::Bytes(there, version))) => {
                    if codec::verify(&there, &id).is_ok() {
                        self.kept(key, there.len() as u64);
                        return Ok(());
                    }
                    mode = PutMode::Update(version);
                }
                // Deleted meanwhile, or too long to be a blob: create it again.
                Ok(None) => mode = PutMode::Create,
                Ok(Some(Fetched::TooLong(_))) => {
                    if let Err(f) = self.delete(key) {
                        return Err(self.write_failed(&at, f));
                    }
                    mode = PutMode::Create;
                }
                Err(f) => return Err(self.write_failed(&at, f)),
            }
        }
        Err(self.write_failed(
            &at,
            Failure::Down(format!(
                "other writers kept changing it ({ATTEMPTS} conditional writes lost)"
            )),
        ))
    }

    fn kept(&self, key: SliceKey, bytes: u64) {
        let over = {
            let mut index = lock(&self.inner.index);
            index.touch(key, bytes);
            index.bytes > self.inner.budget
        };
        if over {
            self.enforce_budget();
        }
    }

    fn write_failed(&self, at: &Key, failure: Failure) -> Error {
        self.inner.counters.write_errors.incr();
        let e = self.error(format!("writing {:?}", at.as_ref()), failure);
        lock(&self.inner.first_write_error).get_or_insert_with(|| e.to_string());
        e
    }

    /// Whether a blob of `key` is known to be stored (listed when the tier opened, or read or
    /// written since by this process; not checked).
    pub fn contains(&self, key: SliceKey) -> bool {
        lock(&self.inner.index).entries.contains_key(&key)
    }

    /// Deletes the blob of `key`, if any.
    pub fn remove(&self, key: SliceKey) {
        if let Err(f) = self.delete(key) {
            self.warn(format!("deleting {:?}: {f}", self.blob_key(key).as_ref()));
        }
    }

    /// Records that the blob of `key` is damaged (found by a later decode): counted and
    /// deleted.
    pub fn report_corrupt(&self, key: SliceKey, reason: &str) {
        self.discard(key, reason, false);
    }

    /// Records `manifest` as the lineage's sources (after [`crate::Pyramid::verify`] found
    /// sources changed and dropped their dependents), on the same conditions as on open.
    ///
    /// # Errors
    /// [`Error::ObjectStore`] when the manifest cannot be read or written.
    pub fn replace_manifest(&self, manifest: &Manifest) -> Result<()> {
        let current = manifest.clone().portable();
        self.take_over(&current)?;
        *lock(&self.inner.manifest) = current;
        Ok(())
    }

    /// Deletes the least valuable blobs until they take at most 90% of the budget.
    fn enforce_budget(&self) {
        let budget = self.inner.budget;
        let priority = self
            .inner
            .priority
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let victims: Vec<SliceKey> = {
            let mut index = lock(&self.inner.index);
            if index.bytes <= budget {
                return;
            }
            let target = budget - budget / 10;
            let mut ranked: Vec<(f64, u64, SliceKey)> = index
                .entries
                .iter()
                .map(|(k, e)| (priority.as_ref().map_or(0.0, |f| f(*k)), e.last_used, *k))
                .collect();
            ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let mut victims = Vec::new();
            for (_, _, key) in ranked {
                if index.bytes <= target {
                    break;
                }
                index.forget(key);
                victims.push(key);
            }
            victims
        };
        for key in victims {
            match self.delete(key) {
                Ok(()) => self.inner.counters.evictions.incr(),
                Err(f) => self.warn(format!(
                    "deleting {:?} (over the budget): {f}",
                    self.blob_key(key).as_ref()
                )),
            }
        }
    }
}

impl Tier for ObjectStoreTier {
    fn name(&self) -> &'static str {
        "object store"
    }

    fn get(&self, key: SliceKey) -> Option<Blob> {
        ObjectStoreTier::get(self, key)
    }

    fn put(&self, key: SliceKey, blob: &Blob) -> Result<()> {
        ObjectStoreTier::put(self, key, blob)
    }

    fn contains(&self, key: SliceKey) -> bool {
        ObjectStoreTier::contains(self, key)
    }

    fn remove(&self, key: SliceKey) {
        ObjectStoreTier::remove(self, key);
    }

    fn report_corrupt(&self, key: SliceKey, reason: &str) {
        ObjectStoreTier::report_corrupt(self, key, reason);
    }

    fn tier_stats(&self) -> TierStats {
        let s = self.stats();
        TierStats {
            hits: s.hits,
            misses: s.misses,
            corrupt: s.corrupt + s.stale,
            writes: s.writes,
            evictions: s.evictions,
            bytes: s.bytes,
            entries: s.objects,
            budget: s.budget,
        }
    }

    fn set_priority(&self, priority: PriorityFn) {
        ObjectStoreTier::set_priority(self, priority);
    }

    fn warnings(&self) -> Vec<String> {
        ObjectStoreTier::warnings(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_errors_are_read_from_their_body() {
        let text = "Server returned non-2xx status code: 403 Forbidden: <?xml version=\"1.0\"?> \
                    <Error><Code>SignatureDoesNotMatch</Code><Message>The signature does not \
                    match.</Message></Error>";
        assert_eq!(
            s3_reason(text),
            "SignatureDoesNotMatch: The signature does not match."
        );
        assert_eq!(s3_reason("plain"), "plain");
    }

    fn parts(url: &str) -> (Service, &'static str, String, String) {
        let p = parse_url(url).unwrap();
        (p.service, p.scheme, p.bucket, p.prefix.as_ref().to_string())
    }

    #[test]
    fn urls_name_a_bucket_and_a_prefix() {
        let s = |x: &str| x.to_string();
        assert_eq!(
            parts("s3://lab-cache/lodcache/scans"),
            (Service::S3, "s3", s("lab-cache"), s("lodcache/scans"))
        );
        assert_eq!(
            parts("s3://lab-cache"),
            (Service::S3, "s3", s("lab-cache"), s(""))
        );
        assert_eq!(parts("s3://lab-cache//a//b/").3, "a/b");
        assert_eq!(
            parts("gs://lab_cache.eu/x"),
            (Service::Gcs, "gs", s("lab_cache.eu"), s("x"))
        );
        assert_eq!(
            parts("az://lab-cache/x/y"),
            (Service::Azure, "az", s("lab-cache"), s("x/y"))
        );
        assert_eq!(
            parts("azure://lab-cache"),
            (Service::Azure, "azure", s("lab-cache"), s(""))
        );
        for bad in [
            "lab-cache/x",
            "http://bucket/x",
            "s3://",
            "s3://Upper/x",
            "s3://ab",
            "s3://lab_cache/x",
            "s3://bucket/../x",
            "s3://bucket/a\nb",
            "gs://-lead/x",
            "gs://Upper/x",
            "az://two--dashes/x",
            "az://dotted.name/x",
            "az://ab",
            "azure://bucket/./x",
            "file:///tmp/cache",
        ] {
            let e = parse_url(bad).unwrap_err().to_string();
            assert!(e.contains("cache URL"), "{bad}: {e}");
        }
        let other = parse_url("hdfs://b/x").unwrap_err().to_string();
        assert!(
            other.contains("hdfs:// scheme is not supported")
                && other.contains("gs://")
                && other.contains("az://"),
            "{other}"
        );
        let file = parse_url("file:///tmp/c").unwrap_err().to_string();
        assert!(
            file.contains("file:// is not supported") && file.contains("version read"),
            "{file}"
        );
        let container = parse_url("az://a_b/x").unwrap_err().to_string();
        assert!(container.contains("container name"), "{container}");
    }

    /// Options that belong to another service are refused before anything is sent.
    #[test]
    fn options_of_another_service_are_refused() {
        let e = |o: ObjectStoreOptions| connect(&o).map(|_| ()).unwrap_err().to_string();
        let endpoint = e(ObjectStoreOptions::new("gs://bucket/x").with_endpoint("http://h:1"));
        assert!(
            endpoint.contains("s3:// only") && endpoint.contains("GOOGLE_BASE_URL"),
            "{endpoint}"
        );
        let keys = e(ObjectStoreOptions::new("az://box/x").with_credentials("id", "secret"));
        assert!(keys.contains("S3 access key"), "{keys}");
        let unknown = e(ObjectStoreOptions::new("az://box/x").with_option("google_base_url", "x"));
        assert!(
            unknown.contains("google_base_url") && unknown.contains("azure_"),
            "{unknown}"
        );
        let base = e(ObjectStoreOptions::new("gs://bucket/x")
            .with_option("google_base_url", "localhost:4443"));
        assert!(base.contains("http://HOST:PORT"), "{base}");
        // A service-account key that is not one: said when configuring.
        let account = e(ObjectStoreOptions::new("gs://bucket/x")
            .with_option("google_service_account_key", "{not json"));
        assert!(account.contains("configuring the client"), "{account}");
    }
}
