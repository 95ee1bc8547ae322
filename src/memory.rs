//! The memory `[delivery] max_memory` is held to: the process's resident memory that no file
//! backs (its heap, stacks and buffers; not the binary's code, which the system can drop and
//! read again). It is what an out-of-memory killer and a container's limit count.
//!
//! Estimates of what each part holds missed most of it: a zstd column writer's contexts are
//! about 100 KiB before its first page and several hundred KiB after, buffers have spare
//! capacity, librdkafka keeps fetch buffers per partition. The count misses nothing; it is read
//! from `/proc/self/statm`, a few microseconds, cheap enough once per batch.
//!
//! weir allocates through jemalloc, unprefixed so that the C libraries it links (librdkafka,
//! zstd) allocate through it too. An allocator keeps the pages of freed memory for a while to
//! reuse them, and they count as resident: [`Memory::release_freed`] hands them back when a
//! checkpoint freed much at once.

use std::fs;

/// Reads how much memory the process holds.
pub struct Memory {
    page_bytes: usize,
}

impl Memory {
    /// `None` where the system does not say (no `/proc`).
    pub fn new() -> Option<Self> {
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let memory = Self {
            page_bytes: usize::try_from(page).ok().filter(|&p| p > 0)?,
        };
        memory.resident().map(|_| memory)
    }

    /// Resident bytes not backed by files, now.
    pub fn resident(&self) -> Option<usize> {
        let statm = fs::read_to_string("/proc/self/statm").ok()?;
        // size resident shared text lib data dt, in pages; `shared` is the file-backed part.
        let mut pages = statm.split_ascii_whitespace().skip(1);
        let resident: usize = pages.next()?.parse().ok()?;
        let file_backed: usize = pages.next()?.parse().ok()?;
        Some(resident.saturating_sub(file_backed) * self.page_bytes)
    }

    /// Gives the pages of freed memory back to the system now. Without it they stay for
    /// seconds after a checkpoint freed most of the buffers, and the process looks (and is
    /// billed) as large as at its peak.
    pub fn release_freed(&self) {
        // Every arena: MALLCTL_ARENAS_ALL.
        let name = c"arena.4096.purge";
        let status = unsafe {
            tikv_jemalloc_sys::mallctl(
                name.as_ptr(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                0,
            )
        };
        if status != 0 {
            tracing::debug!(status, "the allocator did not purge freed pages");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    unsafe extern "C" {
        fn malloc(size: usize) -> *mut std::ffi::c_void;
        fn free(block: *mut std::ffi::c_void);
    }

    #[test]
    fn the_count_follows_memory_that_c_code_allocates_and_frees() {
        let memory = Memory::new().expect("/proc/self/statm");
        // What librdkafka and zstd do: allocate with C's malloc, not Rust's allocator. Far
        // more than what the tests beside this one allocate and free meanwhile.
        let size = 512 << 20;
        let before = memory.resident().unwrap();
        let block = unsafe { malloc(size) };
        assert!(!block.is_null());
        // Memory counts once it is used, not when it is allocated.
        unsafe { std::ptr::write_bytes(block.cast::<u8>(), 1, size) };
        let during = memory.resident().unwrap();
        unsafe { free(block) };
        memory.release_freed();
        let after = memory.resident().unwrap();
        assert!(during > before + size / 2, "{before} then {during}");
        assert!(after + size / 2 < during, "{during} then {after}");
    }
}
