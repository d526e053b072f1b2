//! Bounded background jobs of one kind in this process: smart-group computations and
//! course link jobs both run this way.
//!
//! A job is known by a key (the group, the link). At most `workers` jobs of a kind run at
//! once and at most `queue` are admitted (running or waiting for a worker); a key already
//! admitted is not admitted twice. A job refused here is not lost: its durable state (a
//! group not `ready`, a link not ready) stays in the database without a lease, and the
//! housekeeping pass on some replica starts it later. So a burst of requests cannot spawn
//! a task per request, and a job is never run twice at once by one process.

use std::collections::HashSet;
use std::future::Future;
use std::hash::Hash;
use std::sync::Mutex;

use tokio::sync::Semaphore;

/// The admission set and worker slots of one kind of job (a `static` per kind).
pub struct BackgroundJobs<K> {
    slots: Semaphore,
    admitted: Mutex<Option<HashSet<K>>>,
    queue: usize,
}

impl<K: Copy + Eq + Hash + Send + 'static> BackgroundJobs<K> {
    /// `workers` jobs run at once; `queue` are admitted at once (running or waiting).
    pub const fn new(workers: usize, queue: usize) -> Self {
        BackgroundJobs { slots: Semaphore::const_new(workers), admitted: Mutex::new(None), queue }
    }

    /// Runs `job` in the background once a worker slot is free, holding the key's place
    /// until it ends (or its runtime stops). False, and nothing spawned, when the key is
    /// already admitted or the queue is full.
    pub fn spawn(&'static self, key: K, job: impl Future<Output = ()> + Send + 'static) -> bool {
        let Some(admission) = self.admit(key) else { return false };
        tokio::spawn(async move {
            let _admission = admission;
            let Ok(_slot) = self.slots.acquire().await else { return };
            job.await;
        });
        true
    }

    /// The key's place among the admitted jobs; None when it is already admitted or the
    /// queue is full.
    pub(crate) fn admit(&'static self, key: K) -> Option<Admission<K>> {
        let mut admitted = self.admitted.lock().unwrap_or_else(|p| p.into_inner());
        let set = admitted.get_or_insert_with(HashSet::new);
        // Lazily: an `Admission` built and dropped here would re-lock the set.
        (set.len() < self.queue && set.insert(key)).then(|| Admission { jobs: self, key })
    }
}

/// A job's place among the admitted ones, given back when dropped (the job ended,
/// failed or its runtime stopped).
pub(crate) struct Admission<K: Copy + Eq + Hash + 'static> {
    jobs: &'static BackgroundJobs<K>,
    key: K,
}

impl<K: Copy + Eq + Hash + 'static> Admission<K> {
    #[cfg(test)]
    pub(crate) fn key(&self) -> K {
        self.key
    }
}

impl<K: Copy + Eq + Hash + 'static> Drop for Admission<K> {
    fn drop(&mut self) {
        let mut admitted = self.jobs.admitted.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(set) = admitted.as_mut() {
            set.remove(&self.key);
        }
    }
}
