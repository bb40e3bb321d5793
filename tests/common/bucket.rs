//! A plain client of the test store for the object-store tests (feature `object-store`): what
//! another machine, a broken disk or a person with the credentials could do to the bucket
//! behind the tier's back; and the tier's options for the test store.

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use lodcache::store::ObjectStoreOptions;

use super::{ACCESS_KEY, Remote, S3, SECRET_KEY};

/// The tier's options for the test store: the URL, and for S3 the test server and its
/// credentials (the other services read theirs from the environment).
pub fn store_options(remote: &Remote) -> ObjectStoreOptions {
    let options = ObjectStoreOptions::new(&remote.url);
    match &remote.s3 {
        Some(s3) => options
            .with_endpoint(&s3.endpoint)
            .with_credentials(ACCESS_KEY, SECRET_KEY),
        None => options,
    }
}

/// A client of the test server's bucket, on a runtime of its own.
pub struct Bucket {
    pub store: Box<dyn ObjectStore>,
    pub runtime: tokio::runtime::Runtime,
}

impl Bucket {
    /// A client for the bucket of the S3 server `s3`, with the test credentials.
    pub fn new(s3: &S3) -> Bucket {
        Bucket::of(&Remote {
            url: s3.url.clone(),
            s3: Some(S3 {
                endpoint: s3.endpoint.clone(),
                url: s3.url.clone(),
                server: None,
            }),
        })
    }

    /// A client for the bucket (or container) of `remote.url`: for S3 with the test
    /// credentials, else configured from the environment as the tier is.
    pub fn of(remote: &Remote) -> Bucket {
        let bucket = remote
            .url
            .split_once("://")
            .and_then(|(_, r)| r.split('/').next())
            .unwrap();
        let store: Box<dyn ObjectStore> = match (&remote.s3, remote.scheme()) {
            (Some(s3), _) => Box::new(
                AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_endpoint(&s3.endpoint)
                    .with_allow_http(true)
                    .with_region("us-east-1")
                    .with_access_key_id(ACCESS_KEY)
                    .with_secret_access_key(SECRET_KEY)
                    .build()
                    .unwrap(),
            ),
            (None, "az" | "azure") => Box::new(
                MicrosoftAzureBuilder::from_env()
                    .with_container_name(bucket)
                    .with_allow_http(true)
                    .build()
                    .unwrap(),
            ),
            (None, "gs") => Box::new(
                GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(bucket)
                    .with_client_options(object_store::ClientOptions::new().with_allow_http(true))
                    .build()
                    .unwrap(),
            ),
            (None, other) => panic!("no test client for {other}://"),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        Bucket { store, runtime }
    }

    /// Runs `f` on the client's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// Writes `bytes` at `key`, replacing what is there.
    pub fn put(&self, key: &str, bytes: &[u8]) {
        self.block_on(
            self.store
                .put(&Key::from(key), PutPayload::from(bytes.to_vec())),
        )
        .unwrap();
    }

    /// The bytes at `key`, if any.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self.block_on(async {
            let got = self.store.get(&Key::from(key)).await?;
            got.bytes().await
        }) {
            Ok(b) => Some(b.to_vec()),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => panic!("reading {key}: {e}"),
        }
    }

    /// Deletes `key`.
    pub fn delete(&self, key: &str) {
        self.block_on(self.store.delete(&Key::from(key))).unwrap();
    }

    /// Every object under `prefix`: key, size and ETag, sorted by key.
    pub fn list(&self, prefix: &str) -> Vec<(String, u64, String)> {
        let mut out = Vec::new();
        let mut todo = vec![Key::from(prefix)];
        while let Some(dir) = todo.pop() {
            let listed = self
                .block_on(self.store.list_with_delimiter(Some(&dir)))
                .unwrap();
            todo.extend(listed.common_prefixes);
            for o in listed.objects {
                out.push((o.location.to_string(), o.size, o.e_tag.unwrap_or_default()));
            }
        }
        out.sort();
        out
    }
}

/// The key of the object at `SCHEME://bucket/KEY` (a tier's location, say).
pub fn key_of(location: &str) -> String {
    let rest = location.split_once("://").unwrap().1;
    rest.split_once('/').map_or("", |(_, k)| k).to_string()
}
