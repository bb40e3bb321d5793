//! The object-store tier against a real server: SeaweedFS (S3, with real authentication and
//! atomic conditional puts; see `common/s3.rs`), or the store at `LODCACHE_TEST_CACHE_URL`
//! (`.ci/cloud-test` runs them against Azurite, Azure's emulator, with `az://`): the server
//! honours both kinds of conditional put under a forced race; two processes that see the scan at two paths (a copy
//! with the same times, other inodes) share its blobs; a damaged object is detected and
//! replaced; two writers racing on one key both read correct data and only one writes;
//! concurrent openers never lose each other's invalidations; a changed source slice deletes
//! exactly its dependents in the bucket; wrong credentials and a missing bucket say so; a
//! paused (overloaded) server never hangs a request, and what could not be stored is never
//! reported stored (S3 only: it pauses its own SeaweedFS); a warm-up copies to the store what
//! only the local folder holds. The tool's side (Slurm shards, a server killed mid-warm-up) is in `.ci/scale-test`.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Barrier, Mutex, mpsc};
use std::time::{Duration, Instant};

use common::{
    ACCESS_KEY, Bucket, Remote, S3, SECRET_KEY, Scan, Weed, child_args, key_of, store_options,
    this_test,
};
use lodcache::codec::{self, FilterChoice};
use lodcache::store::object::{Hook, HookPoint};
use lodcache::store::{Fingerprint, Manifest, ObjectStoreOptions, ObjectStoreTier};
use lodcache::{
    ErrorKind, Phantom, Pixels, Pyramid, SampleType, Served, Slice, SliceKey, Stack, WarmupOptions,
    WarmupOutcome, dependent_slice,
};
use object_store::path::Path as Key;
use object_store::{ObjectStore, PutMode, PutPayload, UpdateVersion};

/// 96 x 80 x 24 at edge 8: levels 48 x 40 x 12, 24 x 20 x 6, 12 x 10 x 3, 6 x 5 x 2.
const EDGE: u32 = 8;

fn phantom_scan(seed: u64) -> Scan {
    Scan::new(Phantom::new(96, 80, 24).with_seed(seed), EDGE)
}

fn options(remote: &Remote) -> ObjectStoreOptions {
    store_options(remote)
}

/// The pyramid of `stack` over the store, with the local folder `local`.
fn open(stack: &Path, local: &Path, store: ObjectStoreOptions) -> Pyramid {
    Pyramid::builder(stack)
        .with_edge(EDGE)
        .with_cache_dir(local)
        .with_object_store(store)
        .build()
        .unwrap()
}

/// Warms every level into the store and closes the pyramid.
fn fill(scan: &Scan, s3: &Remote) {
    let pyr = open(&scan.stack, &scan.path("fill-local"), options(s3));
    let outcome = pyr.warm_up(WarmupOptions::default().with_threads(2)).wait();
    assert!(
        matches!(outcome, WarmupOutcome::Completed(_)),
        "{outcome:?}"
    );
    let stats = pyr.object_store().unwrap().stats();
    assert_eq!(stats.objects, scan.keys().len() as u64);
    assert_eq!(stats.write_errors, 0);
}

/// The lineage's blob objects: key -> ETag.
fn blob_objects(bucket: &Bucket, pyr: &Pyramid) -> BTreeMap<SliceKey, String> {
    let root = key_of(&pyr.object_store().unwrap().location());
    bucket
        .list(&root)
        .into_iter()
        .filter_map(|(key, _, etag)| {
            let rest = key.strip_prefix(&format!("{root}/"))?;
            let (level, file) = rest.split_once('/')?;
            let z = file.strip_suffix(".blob")?;
            Some((SliceKey::new(level.parse().ok()?, z.parse().ok()?), etag))
        })
        .collect()
}

/// The store the test runs against (SeaweedFS, Azurite) honours both kinds of conditional put,
/// atomically under a forced race: the tier's guarantees rest on it.
#[test]
fn the_store_honours_conditional_puts() {
    let Some(s3) = common::remote("the_store_honours_conditional_puts") else {
        return;
    };
    let bucket = Bucket::of(&s3);
    let prefix = key_of(&s3.url);
    let store = &bucket.store;
    let key = Key::from(format!("{prefix}/one"));
    let put = |payload: &str, mode: PutMode| {
        bucket.block_on(store.put_opts(
            &key,
            PutPayload::from(payload.as_bytes().to_vec()),
            mode.into(),
        ))
    };
    // Create where nothing is; not again.
    let first = put("one", PutMode::Create).unwrap();
    let again = put("two", PutMode::Create);
    assert!(
        matches!(again, Err(object_store::Error::AlreadyExists { .. })),
        "a second create: {again:?}"
    );
    assert_eq!(bucket.get(key.as_ref()).unwrap(), b"one");
    // Update on the version read; not on a version that is gone.
    let read = UpdateVersion {
        e_tag: first.e_tag.clone(),
        version: first.version.clone(),
    };
    put("two", PutMode::Update(read.clone())).unwrap();
    let stale = put("three", PutMode::Update(read));
    assert!(
        matches!(stale, Err(object_store::Error::Precondition { .. })),
        "an update on a stale version: {stale:?}"
    );
    assert_eq!(bucket.get(key.as_ref()).unwrap(), b"two");

    // Eight writers released at once on one new key, five times: exactly one creates it, and
    // the object is the winner's bytes.
    for round in 0..5 {
        let key = Key::from(format!("{prefix}/race-{round}"));
        let gate = Barrier::new(8);
        let results: Vec<(usize, bool)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let (key, gate, bucket) = (&key, &gate, &bucket);
                    s.spawn(move || {
                        let payload = PutPayload::from(format!("writer {i}").into_bytes());
                        gate.wait();
                        let r = bucket.block_on(bucket.store.put_opts(
                            key,
                            payload,
                            PutMode::Create.into(),
                        ));
                        match r {
                            Ok(_) => (i, true),
                            Err(object_store::Error::AlreadyExists { .. }) => (i, false),
                            Err(e) => panic!("writer {i}: {e}"),
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners: Vec<usize> = results.iter().filter(|r| r.1).map(|r| r.0).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        assert_eq!(
            bucket.get(key.as_ref()).unwrap(),
            format!("writer {}", winners[0]).into_bytes(),
            "round {round}"
        );
    }
}

/// What the child processes of [`two_machines_share_blobs_from_two_paths`] do.
const MACHINE: &str = "LODCACHE_TEST_MACHINE";

/// Two processes: one warms the scan at one path into the store, the other opens a copy at
/// another path (same names, sizes and times, other inodes) with an empty local folder and
/// gets every slice from the store, generating nothing.
#[test]
fn two_machines_share_blobs_from_two_paths() {
    let Some(s3) = common::remote("two_machines_share_blobs_from_two_paths") else {
        return;
    };
    let scan = phantom_scan(3);
    let copy = scan.path("elsewhere").join("scan");
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(&scan.stack).unwrap() {
        let entry = entry.unwrap();
        let to = copy.join(entry.file_name());
        std::fs::copy(entry.path(), &to).unwrap();
        common::set_mtime(&to, entry.metadata().unwrap().modified().unwrap());
        assert_ne!(
            std::fs::metadata(&to).unwrap().ino(),
            entry.metadata().unwrap().ino()
        );
    }
    let machine = |role: &str, stack: &Path, local: &str| {
        let spec = [
            role,
            stack.to_str().unwrap(),
            scan.path(local).to_str().unwrap(),
            &s3.url,
            s3.s3.as_ref().map_or("", |s| s.endpoint.as_str()),
        ]
        .join("|");
        let mut command = this_test("machine");
        command.env(MACHINE, spec);
        let child = common::Child::spawn(command, role).unwrap();
        child.succeed()
    };
    let first = machine("warm", &scan.stack, "local-a");
    assert!(first.iter().any(|l| l.starts_with("stored ")), "{first:?}");
    let second = machine("read", &copy, "local-b");
    let total = scan.keys().len();
    assert!(
        second.contains(&format!("remote {total} generated 0")),
        "{second:?}"
    );
}

/// One "machine" of [`two_machines_share_blobs_from_two_paths`] (does nothing unless run as
/// its child).
#[test]
fn machine() {
    let Some(args) = child_args(MACHINE) else {
        return;
    };
    let [role, stack, local, url, endpoint] = &args[..] else {
        panic!("{args:?}");
    };
    // No endpoint: a service configured from the environment.
    let store = if endpoint.is_empty() {
        ObjectStoreOptions::new(url)
    } else {
        ObjectStoreOptions::new(url)
            .with_endpoint(endpoint)
            .with_credentials(ACCESS_KEY, SECRET_KEY)
    };
    let pyr = open(Path::new(stack), Path::new(local), store);
    if role == "warm" {
        let outcome = pyr.warm_up(WarmupOptions::default()).wait();
        assert!(
            matches!(outcome, WarmupOutcome::Completed(_)),
            "{outcome:?}"
        );
        println!("stored {}", pyr.object_store().unwrap().stats().objects);
        return;
    }
    let naive = common::phantom_volume(&Phantom::new(96, 80, 24).with_seed(3)).pyramid(8);
    let served = common::request_all("second machine", &pyr, &naive);
    let remote = served.iter().filter(|(_, s)| *s == Served::Remote).count();
    println!("remote {remote} generated {}", pyr.stats().generated);
}

#[test]
fn a_damaged_object_is_detected_and_replaced() {
    let Some(s3) = common::remote("a_damaged_object_is_detected_and_replaced") else {
        return;
    };
    let scan = phantom_scan(4);
    fill(&scan, &s3);
    let bucket = Bucket::of(&s3);
    let key = SliceKey::new(2, 1);
    let pyr = open(&scan.stack, &scan.path("local-1"), options(&s3));
    let root = key_of(&pyr.object_store().unwrap().location());
    let name = format!("{root}/2/000001.blob");
    let mut damaged = bucket.get(&name).unwrap();
    let at = damaged.len() / 2;
    damaged[at] ^= 0x10;
    bucket.put(&name, &damaged);

    let (slice, served) = pyr.slice_served(key.level, key.z).unwrap();
    assert_eq!(served, Served::Generated, "a damaged object was served");
    scan.check("after damage", key, &slice);
    pyr.flush();
    let stats = pyr.object_store().unwrap().stats();
    assert_eq!((stats.corrupt, stats.writes), (1, 1), "{stats:?}");
    assert!(
        pyr.warnings().iter().any(|w| w.contains("damaged object")),
        "{:?}",
        pyr.warnings()
    );
    let replaced = bucket.get(&name).unwrap();
    assert_ne!(replaced, damaged, "the damaged object is still there");
    drop(pyr);

    // Another process (an empty local folder) gets the replacement from the store.
    let pyr = open(&scan.stack, &scan.path("local-2"), options(&s3));
    let (slice, served) = pyr.slice_served(key.level, key.z).unwrap();
    assert_eq!(served, Served::Remote);
    scan.check("replacement", key, &slice);
    assert_eq!(pyr.object_store().unwrap().stats().corrupt, 0);
}

/// The same 16-bit slice encoded two ways (plain and byte-shuffled): two sound blobs of one
/// key and origin with different bytes, as two machines with different settings make them.
fn two_encodings(fingerprint: &Fingerprint, key: SliceKey) -> (Slice, Vec<u8>, Vec<u8>) {
    let level = fingerprint.level(key).unwrap();
    let samples: Vec<u16> = (0..level.width * level.height)
        .map(|i| (i * 37 % 4096) as u16 + (key.z as u16) * 3)
        .collect();
    let slice = Slice::new(level.width, level.height, Pixels::U16(samples)).unwrap();
    let origin = fingerprint.origin(key);
    let plain = codec::encode(&slice, key, origin, FilterChoice::None).to_vec();
    let shuffled = codec::encode(&slice, key, origin, FilterChoice::Shuffle).to_vec();
    assert_ne!(plain, shuffled);
    (slice, plain, shuffled)
}

#[test]
fn racing_writers_on_one_key_both_read_correct_data() {
    let Some(s3) = common::remote("racing_writers_on_one_key_both_read_correct_data") else {
        return;
    };
    let scan = phantom_scan(5);
    let manifest = Manifest::of(&Stack::open(&scan.stack).unwrap())
        .unwrap()
        .portable();
    let fingerprint = Fingerprint::of(&manifest);
    // Two machines: two clients, each with its own connection and index.
    let machines: Vec<ObjectStoreTier> = (0..2)
        .map(|_| ObjectStoreTier::open(&options(&s3), &manifest, fingerprint.clone()).unwrap())
        .collect();
    let bucket = Bucket::of(&s3);
    let root = key_of(&machines[0].location());

    let race = |key: SliceKey| {
        let (slice, plain, shuffled) = two_encodings(&fingerprint, key);
        let writes_before: u64 = machines.iter().map(|m| m.stats().writes).sum();
        let gate = Barrier::new(2);
        std::thread::scope(|s| {
            for (machine, blob) in machines.iter().zip([&plain, &shuffled]) {
                let gate = &gate;
                s.spawn(move || {
                    gate.wait();
                    machine.put(key, blob).unwrap();
                });
            }
        });
        let writes: u64 = machines.iter().map(|m| m.stats().writes).sum::<u64>() - writes_before;
        assert_eq!(writes, 1, "{key}: both writers wrote");
        let a = machines[0].get(key).unwrap();
        let b = machines[1].get(key).unwrap();
        assert_eq!(a, b, "{key}: the two machines read different objects");
        assert!(
            *a == *plain || *a == *shuffled,
            "{key}: a mix of the two writes"
        );
        let id = fingerprint.id(key).unwrap();
        assert_eq!(codec::decode(&a, &id).unwrap(), slice, "{key}");
    };
    // A new key, ten times over.
    for z in 0..10 {
        race(SliceKey::new(1, z));
    }
    // A damaged object in place: both replace it on condition that it is the version they
    // read, so one replacement wins and the other writer reads and keeps it.
    for z in 0..4 {
        let key = SliceKey::new(2, z);
        bucket.put(
            &format!("{root}/2/{z:06}.blob"),
            b"damaged: not a blob at all",
        );
        race(key);
    }
}

/// A: a process whose sources show slice 5 changed reads the manifest and deletes the blobs
/// made from slice 5, then pauses before writing its manifest. B: a process whose sources
/// show slice 9 changed (and 5 not) opens meanwhile, deletes slice 9's dependents, writes its
/// manifest and stores a new blob made from its slice 9. A goes on: its conditional write must
/// fail, and it must compare with B's manifest and delete what differs (B's new blob made from
/// a slice 9 it does not have) before writing its own. Afterwards every blob in the bucket is
/// made from the sources the manifest there records. (With a blind write, B's blob stays
/// under A's manifest.)
#[test]
fn concurrent_openers_never_lose_each_others_invalidations() {
    let Some(s3) = common::remote("concurrent_openers_never_lose_each_others_invalidations") else {
        return;
    };
    let scan = Scan::new(
        Phantom::new(64, 48, 32).with_sample_type(SampleType::U16),
        EDGE,
    );
    let m0 = Manifest::of(&Stack::open(&scan.stack).unwrap())
        .unwrap()
        .portable();
    let changed = |p: usize| {
        let mut m = m0.clone();
        m.sources[p].mtime_ns += 1;
        m
    };
    let (m1, m2) = (changed(5), changed(9));
    let (f0, f1, f2) = (
        Fingerprint::of(&m0),
        Fingerprint::of(&m1),
        Fingerprint::of(&m2),
    );
    let keys: Vec<SliceKey> = (1..=3u32)
        .flat_map(|l| (0..f0.levels()[l as usize].depth).map(move |z| SliceKey::new(l, z)))
        .collect();
    {
        let t0 = ObjectStoreTier::open(&options(&s3), &m0, f0.clone()).unwrap();
        for &k in &keys {
            t0.put(k, &two_encodings(&f0, k).1).unwrap();
        }
    }
    let (paused_tx, paused_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let go_rx = Mutex::new(go_rx);
    let first = std::sync::atomic::AtomicBool::new(true);
    let hook: Hook = Arc::new(move |point| {
        if point == HookPoint::BeforeManifestWrite
            && first.swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            paused_tx.send(()).unwrap();
            go_rx.lock().unwrap().recv().unwrap();
        }
    });
    let a_options = options(&s3).with_hook(hook);
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| ObjectStoreTier::open(&a_options, &m1, f1.clone()).unwrap());
        paused_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("A never reached its manifest write");
        let b = ObjectStoreTier::open(&options(&s3), &m2, f2.clone()).unwrap();
        let nine = SliceKey::new(1, dependent_slice(1, 9));
        b.put(nine, &two_encodings(&f2, nine).1).unwrap();
        go_tx.send(()).unwrap();
        (a.join().unwrap(), b)
    });
    assert_eq!(a.location(), b.location(), "one lineage");
    let bucket = Bucket::of(&s3);
    let root = key_of(&a.location());
    let stored: Manifest =
        serde_json::from_slice(&bucket.get(&format!("{root}/manifest.json")).unwrap()).unwrap();
    assert_eq!(stored, m1, "the last writer's manifest");
    let mut left = 0;
    for (name, ..) in bucket.list(&root) {
        let Some(rest) = name.strip_prefix(&format!("{root}/")) else {
            continue;
        };
        let Some((level, file)) = rest.split_once('/') else {
            continue;
        };
        let key = SliceKey::new(
            level.parse().unwrap(),
            file.trim_end_matches(".blob").parse().unwrap(),
        );
        let bytes = bucket.get(&name).unwrap();
        let check = codec::verify(&bytes, &f1.id(key).unwrap());
        assert!(
            check.is_ok(),
            "{key} in the bucket is not made from the sources its manifest records: {check:?}"
        );
        left += 1;
    }
    // Every blob but those made from slices 5 and 9 (one per level each) is left.
    assert_eq!(left, keys.len() - 6);
}

#[test]
fn a_changed_source_slice_drops_exactly_its_dependents_in_the_bucket() {
    let Some(s3) = common::remote("a_changed_source_slice_drops_exactly_its_dependents") else {
        return;
    };
    let scan = phantom_scan(6);
    fill(&scan, &s3);
    let bucket = Bucket::of(&s3);
    let before = {
        let pyr = open(&scan.stack, &scan.path("local-before"), options(&s3));
        blob_objects(&bucket, &pyr)
    };
    assert_eq!(before.len(), scan.keys().len());

    // Source slice 13 gets other pixels (another phantom's) and a new time.
    const CHANGED: u32 = 13;
    let other = scan.path("other");
    Phantom::new(96, 80, 24)
        .with_seed(66)
        .write(&other)
        .unwrap();
    std::fs::copy(other.join(Phantom::file_name(CHANGED)), scan.file(CHANGED)).unwrap();
    common::set_mtime(
        &scan.file(CHANGED),
        std::time::SystemTime::now() + Duration::from_secs(5),
    );

    let pyr = open(&scan.stack, &scan.path("local-after"), options(&s3));
    let after = blob_objects(&bucket, &pyr);
    let dependents: Vec<SliceKey> = (1..pyr.level_count())
        .map(|l| SliceKey::new(l, dependent_slice(l, CHANGED)))
        .collect();
    assert_eq!(dependents.len(), 4);
    let mut expect = before.clone();
    for k in &dependents {
        expect.remove(k);
    }
    assert_eq!(
        after, expect,
        "not exactly the dependents were deleted (same ETags for the rest)"
    );
    assert_eq!(pyr.object_store().unwrap().stats().invalidated, 4);
    // Everything served afterwards is the pyramid of the stack as it is now; only the
    // dependents are made again.
    let naive = scan.naive_of_files();
    let served = common::request_all("after the change", &pyr, &naive);
    let generated: Vec<SliceKey> = served
        .iter()
        .filter(|(_, s)| *s == Served::Generated)
        .map(|(k, _)| *k)
        .collect();
    assert_eq!(generated.len(), 4, "{served:?}");
    assert!(
        generated.iter().all(|k| dependents.contains(k)),
        "{generated:?}"
    );
}

/// Slices this machine's folder holds and the bucket lacks (stored locally while the store was
/// down, or deleted from the bucket since) are not "stored" for a warm-up with an object store:
/// it copies them from the folder to the store, generating nothing, and afterwards the bucket
/// is complete. (Counting any tier, it skipped them: the bucket stayed without them, and every
/// other machine generated them.)
#[test]
fn a_warm_up_copies_to_the_store_what_only_the_local_folder_holds() {
    let Some(s3) = common::remote("a_warm_up_copies_to_the_store_what_only_the_local_folder_holds")
    else {
        return;
    };
    let scan = phantom_scan(8);
    let local = scan.path("local");
    let bucket = Bucket::of(&s3);
    let gone = [
        SliceKey::new(1, 0),
        SliceKey::new(2, 3),
        SliceKey::new(4, 1),
    ];
    let total = scan.keys().len();
    {
        let pyr = open(&scan.stack, &local, options(&s3));
        let outcome = pyr.warm_up(WarmupOptions::default()).wait();
        assert!(
            matches!(outcome, WarmupOutcome::Completed(_)),
            "{outcome:?}"
        );
        let root = key_of(&pyr.object_store().unwrap().location());
        assert_eq!(blob_objects(&bucket, &pyr).len(), total);
        for k in gone {
            bucket.delete(&format!("{root}/{}/{:06}.blob", k.level, k.z));
        }
    }
    let pyr = open(&scan.stack, &local, options(&s3));
    let before = blob_objects(&bucket, &pyr);
    assert_eq!(before.len(), total - gone.len());
    let outcome = pyr.warm_up(WarmupOptions::default()).wait();
    let WarmupOutcome::Completed(report) = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(report.progress.done, gone.len() as u64, "{report:?}");
    let after = blob_objects(&bucket, &pyr);
    assert_eq!(after.len(), total, "the bucket is not complete: {after:?}");
    for (k, etag) in &before {
        assert_eq!(after.get(k), Some(etag), "{k} was written again");
    }
    let stats = pyr.object_store().unwrap().stats();
    assert_eq!((stats.writes, stats.write_errors), (gone.len() as u64, 0));
    assert_eq!(pyr.stats().generated, 0, "copied, not generated");
    // What was copied is the slice: a fresh machine reads every slice from the bucket.
    let fresh = open(&scan.stack, &scan.path("fresh"), options(&s3));
    let naive = scan.naive_of_files();
    let served = common::request_all("fresh machine", &fresh, &naive);
    assert!(
        served.iter().all(|(_, s)| *s == Served::Remote),
        "{served:?}"
    );
}

/// Wrong credentials and a missing bucket (container) are errors that say so, on every
/// service.
#[test]
fn wrong_credentials_and_a_missing_bucket_say_so() {
    let Some(s3) = common::remote("wrong_credentials_and_a_missing_bucket_say_so") else {
        return;
    };
    let scan = phantom_scan(7);
    let attempt = |store: ObjectStoreOptions| {
        Pyramid::builder(&scan.stack)
            .with_edge(EDGE)
            .with_cache_dir(scan.path("local"))
            .with_object_store(store)
            .build()
            .unwrap_err()
    };
    let (wrong, hint, missing_url, word): (Vec<(&str, ObjectStoreOptions)>, _, _, _) = match &s3.s3
    {
        Some(server) => (
            vec![
                (
                    "a wrong secret",
                    ObjectStoreOptions::new(&s3.url)
                        .with_endpoint(&server.endpoint)
                        .with_credentials(ACCESS_KEY, "not-the-secret"),
                ),
                (
                    "an unknown key",
                    ObjectStoreOptions::new(&s3.url)
                        .with_endpoint(&server.endpoint)
                        .with_credentials("nobody", SECRET_KEY),
                ),
            ],
            "AWS_SECRET_ACCESS_KEY",
            "s3://no-such-bucket-here/x".to_string(),
            "bucket",
        ),
        None => {
            assert!(matches!(s3.scheme(), "az" | "azure"), "{}", s3.url);
            (
                    vec![(
                        "a wrong account key",
                        // 64 bytes, base64: a key of the right form that is not the account's.
                        options(&s3).with_option(
                            "azure_storage_account_key",
                            "bm90LXRoZS1rZXktbm90LXRoZS1rZXktbm90LXRoZS1rZXktbm90LXRoZS1rZXktbm90LXRoZS1rZXkhISE=",
                        ),
                    )],
                    "AZURE_STORAGE_ACCOUNT_KEY",
                    format!("{}://no-such-container-here/x", s3.scheme()),
                    "container",
                )
        }
    };
    for (what, store) in wrong {
        let e = attempt(store);
        let text = e.to_string();
        assert_eq!(e.kind(), ErrorKind::Io, "{what}: {text}");
        assert!(
            text.contains("access refused") && text.contains(hint),
            "{what}: {text}"
        );
        assert!(text.contains(&s3.url), "{what}: {text}");
    }
    let mut missing = ObjectStoreOptions::new(&missing_url);
    if let Some(server) = &s3.s3 {
        missing = missing
            .with_endpoint(&server.endpoint)
            .with_credentials(ACCESS_KEY, SECRET_KEY);
    }
    let missing = attempt(missing).to_string();
    assert!(missing.contains("no-such-"), "{missing}");
    // Said beyond the URL itself.
    assert!(
        missing
            .replace(&missing_url, "")
            .to_lowercase()
            .contains(word),
        "a missing {word}: {missing}"
    );
}

#[test]
fn a_paused_server_never_hangs_a_request_and_nothing_unstored_is_reported_stored() {
    if common::skip_s3("a_paused_server_never_hangs_a_request") {
        return;
    }
    let mut server = Weed::start();
    let url = format!("s3://{}/paused", common::BUCKET);
    let s3 = Remote {
        url: url.clone(),
        s3: Some(S3 {
            endpoint: server.endpoint.clone(),
            url,
            server: None,
        }),
    };
    let scan = phantom_scan(8);
    let timeout = Duration::from_secs(1);
    let pyr = open(
        &scan.stack,
        &scan.path("local"),
        options(&s3).with_timeout(timeout),
    );
    let remote = pyr.object_store().unwrap().clone();
    server.pause();
    let started = Instant::now();
    let (slice, served) = pyr.slice_served(4, 1).unwrap();
    assert_eq!(served, Served::Generated);
    scan.check("server paused", SliceKey::new(4, 1), &slice);
    pyr.flush();
    // One read timed out, the reads and writes after it were not even sent (cool-down); a
    // generous bound for a hang.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    let stats = remote.stats();
    assert!(
        stats.read_errors >= 1 && stats.unavailable >= 1,
        "{stats:?}"
    );
    assert!(stats.write_errors >= 1, "{stats:?}");
    assert_eq!((stats.writes, stats.objects), (0, 0), "{stats:?}");
    assert!(
        pyr.warnings().iter().any(|w| w.contains("no answer")),
        "{:?}",
        pyr.warnings()
    );
    // What was made stays on the local disk; the store holds none of it and says so.
    for level in 1..=4 {
        assert_eq!(remote.level_usage(level), (0, 0));
    }
    assert!(remote.first_write_error().is_some());

    // The server goes on: after the cool-down, new slices are stored there again.
    server.resume();
    std::thread::sleep(lodcache::store::object::COOL_DOWN + Duration::from_millis(200));
    let (_, served) = pyr.slice_served(4, 0).unwrap();
    assert_eq!(served, Served::Generated);
    pyr.flush();
    let stats = remote.stats();
    assert!(stats.writes >= 1, "{stats:?}");
    let bucket = Bucket::of(&s3);
    let stored = blob_objects(&bucket, &pyr);
    assert!(stored.contains_key(&SliceKey::new(4, 0)), "{stored:?}");
    assert!(!stored.contains_key(&SliceKey::new(4, 1)), "{stored:?}");
    for key in stored.keys() {
        assert!(remote.contains(*key), "{key} stored but not known");
    }
    drop(server);
}
