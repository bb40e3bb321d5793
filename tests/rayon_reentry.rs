//! Requests made from inside a rayon pool while another request's kernel runs there in parallel
//! must not deadlock: a worker that waits inside its own parallel kernel may pick up another
//! request, which must not wait (directly or through a helper thread) for a flight that the
//! same worker leads lower in its stack.

mod common;

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Rng, Scan};
use lodcache::{Phantom, Pyramid, SampleType};

#[test]
fn nested_requests_on_a_busy_pool_never_deadlock() {
    // Levels 1 and 2 are large enough for the kernel to split over the pool.
    let scan = Scan::new(
        Phantom::new(2048, 2048, 8).with_sample_type(SampleType::U8),
        32,
    );
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap(),
    );
    let open = {
        let (stack, edge, pool) = (scan.stack.clone(), scan.edge, Arc::clone(&pool));
        move || {
            Pyramid::builder(&stack)
                .with_edge(edge)
                .with_disk_cache(false)
                .with_thread_pool(Arc::clone(&pool))
                .build()
                .unwrap()
        }
    };
    let p = open();
    let t = Instant::now();
    pool.install(|| p.slice(2, 1).unwrap());
    let total = t.elapsed();
    drop(p);

    let (progress, iterations) = mpsc::channel();
    std::thread::spawn(move || {
        let mut rng = Rng(0x1234_5678);
        for i in 0..300u64 {
            // Start the second request somewhere inside the first one's work.
            let window = (total.as_nanos() as u64 * 12 / 10).max(1);
            let delay = Duration::from_nanos(rng.below_u64(window));
            let p = open();
            std::thread::scope(|s| {
                s.spawn(|| pool.install(|| p.slice(2, 1).unwrap()));
                s.spawn(|| {
                    std::thread::sleep(delay);
                    pool.install(|| p.slice(3, 0).unwrap())
                });
            });
            if progress.send(i).is_err() {
                return;
            }
        }
    });
    let mut done = 0;
    loop {
        match iterations.recv_timeout(Duration::from_secs(30)) {
            Ok(i) => done = i + 1,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("no progress for 30 s after {done} iterations: deadlock")
            }
        }
    }
    assert_eq!(done, 300);
}
