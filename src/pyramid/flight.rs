//! Single-flight: concurrent requests for the same missing result compute it once.
//!
//! The map's lock is held only to look up or register a flight, never while the work runs.
//! A waiter blocks on the flight's condition variable, which is safe for plain threads; a rayon
//! worker never blocks on another request (see [`Flights::join`]) because a worker that waits
//! can be the one holding, deeper in its own stack, the work it waits for (rayon steals jobs
//! into a waiting worker: rayon issue 592).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One computation in progress: its outcome once done (`None` inside: it failed).
#[derive(Debug)]
struct Flight<V> {
    outcome: Mutex<Option<Option<V>>>,
    done: Condvar,
}

impl<V: Clone> Flight<V> {
    fn wait(&self) -> Option<V> {
        let mut outcome = lock(&self.outcome);
        loop {
            if let Some(v) = outcome.as_ref() {
                return v.clone();
            }
            outcome = self
                .done
                .wait(outcome)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn finish(&self, value: Option<V>) {
        *lock(&self.outcome) = Some(value);
        self.done.notify_all();
    }
}

/// The flights in progress, by key.
#[derive(Debug)]
pub(crate) struct Flights<K, V> {
    map: Mutex<HashMap<K, Arc<Flight<V>>>>,
}

impl<K, V> Default for Flights<K, V> {
    fn default() -> Self {
        Flights {
            map: Mutex::new(HashMap::new()),
        }
    }
}

/// How a request took part in a flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// It computed the value (and others may have waited for it).
    Led,
    /// It waited for another request's value.
    Waited,
    /// It computed on its own: a rayon worker, or the flight it waited for failed.
    Alone,
}

/// Finishes the flight when dropped, so that waiters wake even if the work panics.
struct Lead<'a, K: Hash + Eq + Clone, V: Clone> {
    flights: &'a Flights<K, V>,
    key: K,
    flight: Arc<Flight<V>>,
    value: Option<V>,
}

impl<K: Hash + Eq + Clone, V: Clone> Drop for Lead<'_, K, V> {
    fn drop(&mut self) {
        lock(&self.flights.map).remove(&self.key);
        self.flight.finish(self.value.take());
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Flights<K, V> {
    /// Computes `work()` for `key` unless another request is computing it, in which case this
    /// waits for that value. On a rayon worker thread it never waits: it computes alone when
    /// a flight is in progress. When the flight it waited for failed it computes alone too, so
    /// that its error is its own.
    pub(crate) fn join<E>(
        &self,
        key: K,
        work: impl FnOnce() -> Result<V, E>,
    ) -> (Result<V, E>, Role) {
        let on_worker = rayon::current_thread_index().is_some();
        let existing = {
            let mut map = lock(&self.map);
            match map.get(&key) {
                Some(f) => Some(Arc::clone(f)),
                None => {
                    let flight = Arc::new(Flight {
                        outcome: Mutex::new(None),
                        done: Condvar::new(),
                    });
                    map.insert(key.clone(), Arc::clone(&flight));
                    drop(map);
                    let mut lead = Lead {
                        flights: self,
                        key,
                        flight,
                        value: None,
                    };
                    let result = work();
                    if let Ok(v) = &result {
                        lead.value = Some(v.clone());
                    }
                    drop(lead);
                    return (result, Role::Led);
                }
            }
        };
        if let Some(flight) = existing.filter(|_| !on_worker)
            && let Some(v) = flight.wait()
        {
            return (Ok(v), Role::Waited);
        }
        (work(), Role::Alone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn concurrent_requests_compute_once() {
        let flights = Flights::<u32, u64>::default();
        let runs = AtomicUsize::new(0);
        let barrier = Barrier::new(8);
        let roles: Vec<Role> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        let (v, role) = flights.join(7, || {
                            runs.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(100));
                            Ok::<_, ()>(42)
                        });
                        assert_eq!(v, Ok(42));
                        role
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(roles.iter().filter(|r| **r == Role::Led).count(), 1);
        assert_eq!(roles.iter().filter(|r| **r == Role::Waited).count(), 7);
        assert!(lock(&flights.map).is_empty());
    }

    #[test]
    fn a_failed_flight_lets_waiters_compute_their_own_error() {
        let flights = Flights::<u32, u64>::default();
        let barrier = Barrier::new(2);
        std::thread::scope(|s| {
            let a = s.spawn(|| {
                flights.join(1, || {
                    barrier.wait();
                    std::thread::sleep(Duration::from_millis(50));
                    Err::<u64, _>("first")
                })
            });
            barrier.wait();
            let (b, role) = flights.join(1, || Err::<u64, _>("second"));
            assert_eq!(a.join().unwrap().0, Err("first"));
            assert_eq!(b, Err("second"));
            assert_eq!(role, Role::Alone);
        });
    }

    #[test]
    fn a_panicking_leader_wakes_its_waiters() {
        let flights = Flights::<u32, u64>::default();
        let barrier = Barrier::new(2);
        std::thread::scope(|s| {
            let a = s.spawn(|| {
                flights.join(1, || -> Result<u64, ()> {
                    barrier.wait();
                    std::thread::sleep(Duration::from_millis(50));
                    panic!("kernel bug");
                })
            });
            barrier.wait();
            let (b, _) = flights.join(1, || Ok::<_, ()>(5));
            assert_eq!(b, Ok(5));
            assert!(a.join().is_err());
        });
    }

    #[test]
    fn rayon_workers_never_wait_on_a_flight() {
        let flights = Flights::<u32, u64>::default();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        // The leader, on a worker, asks for its own key again from inside its work (as a
        // stolen job would): it must compute alone instead of waiting for itself.
        let (v, role) = pool.install(|| {
            flights.join(3, || {
                let (inner, role) = flights.join(3, || Ok::<_, ()>(9));
                assert_eq!(role, Role::Alone);
                inner
            })
        });
        assert_eq!((v, role), (Ok(9), Role::Led));
    }
}
