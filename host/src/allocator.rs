//! How glibc's malloc gives memory back: txform's defaults, set once at start-up.
//!
//! librdkafka allocates each fetch response whole (up to `fetch.max.bytes`, 2 MiB at txform's
//! defaults) on its broker threads and frees it when the response's last record is let go. glibc
//! serves a block that large with its own mmap and unmaps it on free, until the first such free:
//! then its *dynamic* threshold rises to the block's size, so every later response is carved out of
//! a thread's arena, and an arena keeps what it once held. With one arena per thread (up to eight
//! per core) the peak RSS grows with the number of librdkafka threads times the largest response
//! each once held. A fixed threshold keeps large blocks mapped only while they live, and two arenas
//! bound how many heaps hold freed memory. Measured at 500,000 records (docs/benchmarks.md, issue
//! 13 part 11): peak RSS 42-43 to 39 MiB at 1 KiB and 50-58 to 34-42 MiB at 100 B, at the same
//! rate and CPU per record within the machine's spread.
//!
//! A setting the user gives glibc (`GLIBC_TUNABLES`, or its older `MALLOC_*_` variables) wins:
//! txform leaves that one alone.

/// Blocks at least this large are mapped on their own and unmapped when freed. Fixing it also
/// stops glibc from raising it (and the trim threshold with it) after a large free.
pub const MMAP_THRESHOLD_BYTES: usize = 1024 * 1024;

/// The most malloc arenas: the main heap plus one shared by every other thread.
pub const ARENA_MAX: usize = 2;

/// What became of one setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// txform's value is in force.
    Set,
    /// The user set it for glibc; theirs stands.
    UserSet,
    /// Not glibc (or glibc refused the value): the allocator's own behaviour stands.
    Unsupported,
}

/// The outcome of each setting, for the start-up log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    pub mmap_threshold: Outcome,
    pub arena_max: Outcome,
}

impl std::fmt::Display for Tuning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |outcome: Outcome, value: usize| match outcome {
            Outcome::Set => value.to_string(),
            Outcome::UserSet => "the user's".to_string(),
            Outcome::Unsupported => "the allocator's".to_string(),
        };
        write!(
            f,
            "malloc mmap threshold {}, arena max {}",
            show(self.mmap_threshold, MMAP_THRESHOLD_BYTES),
            show(self.arena_max, ARENA_MAX)
        )
    }
}

/// One glibc setting: its tunable's name and its older environment variable.
struct Setting {
    tunable: &'static str,
    legacy_env: &'static str,
}

const MMAP_THRESHOLD: Setting = Setting {
    tunable: "glibc.malloc.mmap_threshold",
    legacy_env: "MALLOC_MMAP_THRESHOLD_",
};

const ARENA: Setting = Setting {
    tunable: "glibc.malloc.arena_max",
    legacy_env: "MALLOC_ARENA_MAX",
};

impl Setting {
    /// Whether the user chose this setting, given `GLIBC_TUNABLES` and a lookup of other variables.
    fn chosen_by_user(&self, tunables: Option<&str>, env: impl Fn(&str) -> bool) -> bool {
        let in_tunables = tunables.is_some_and(|list| {
            list.split(':')
                .any(|entry| entry.split('=').next() == Some(self.tunable))
        });
        in_tunables || env(self.legacy_env)
    }
}

/// Applies txform's malloc settings, except those the user gave glibc. Call it first in `main`,
/// before any thread starts, so every arena is created under the bound.
pub fn tune() -> Tuning {
    let tunables = std::env::var("GLIBC_TUNABLES").ok();
    let env_set = |name: &str| std::env::var_os(name).is_some();
    let apply = |setting: &Setting, param: i32, value: usize| {
        if setting.chosen_by_user(tunables.as_deref(), env_set) {
            Outcome::UserSet
        } else if mallopt(param, value) {
            Outcome::Set
        } else {
            Outcome::Unsupported
        }
    };
    Tuning {
        mmap_threshold: apply(
            &MMAP_THRESHOLD,
            params::MMAP_THRESHOLD,
            MMAP_THRESHOLD_BYTES,
        ),
        arena_max: apply(&ARENA, params::ARENA_MAX, ARENA_MAX),
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod params {
    pub const MMAP_THRESHOLD: i32 = libc::M_MMAP_THRESHOLD;
    pub const ARENA_MAX: i32 = libc::M_ARENA_MAX;
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod params {
    pub const MMAP_THRESHOLD: i32 = 0;
    pub const ARENA_MAX: i32 = 0;
}

/// glibc's `mallopt`; false where it refuses the value or the allocator is not glibc's.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn mallopt(param: i32, value: usize) -> bool {
    let Ok(value) = i32::try_from(value) else {
        return false;
    };
    // SAFETY: mallopt takes plain integers and only changes the allocator's parameters; glibc
    // serialises it against concurrent allocation.
    unsafe { libc::mallopt(param, value) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn mallopt(_param: i32, _value: usize) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::{ARENA, MMAP_THRESHOLD};

    #[test]
    fn a_setting_the_user_gave_glibc_is_theirs_whichever_way_they_gave_it() {
        let no_env = |_: &str| false;
        assert!(MMAP_THRESHOLD.chosen_by_user(
            Some("glibc.malloc.tcache_count=0:glibc.malloc.mmap_threshold=65536"),
            no_env
        ));
        assert!(!ARENA.chosen_by_user(Some("glibc.malloc.mmap_threshold=65536"), no_env));
        // A tunable whose name merely starts with the setting's is another setting.
        assert!(!ARENA.chosen_by_user(Some("glibc.malloc.arena_max_x=1"), no_env));
        assert!(!ARENA.chosen_by_user(None, no_env));
        assert!(ARENA.chosen_by_user(None, |name| name == "MALLOC_ARENA_MAX"));
        assert!(!MMAP_THRESHOLD.chosen_by_user(None, |name| name == "MALLOC_ARENA_MAX"));
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_takes_both_values() {
        // The values themselves, not the user-choice logic: the test's own environment may set them.
        assert!(super::mallopt(
            super::params::MMAP_THRESHOLD,
            super::MMAP_THRESHOLD_BYTES
        ));
        assert!(super::mallopt(super::params::ARENA_MAX, super::ARENA_MAX));
    }
}
