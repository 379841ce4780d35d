//! Large read-mostly tables, backed by transparent huge pages where the system offers them.
//!
//! A library call reads a few hundred rows scattered over item tables of 100k rows: the 500
//! candidates' 8-bit codes alone are 500 rows of a 25 MB table. With 4 KiB pages nearly every such
//! row also misses the TLB, and in a virtual machine each miss walks two levels of page tables
//! (the guest's and the host's); with 2 MiB pages the whole table needs 13 TLB entries. Linux's
//! default THP mode (`madvise`) only backs ranges a program asks for, and only on their first
//! write, so a [`LargeTable`] of [`MAPPED_FROM`] bytes or more is its own anonymous mapping,
//! aligned to 2 MiB and advised `MADV_HUGEPAGE` before anything is written to it. Smaller
//! tables, other systems and a refused mapping fall back to a `Vec`: the advice is a hint, never
//! an error, and the values are the same either way.

use bytemuck::Pod;
use std::fmt;
use std::ops::{Deref, DerefMut};

/// Bytes of one transparent huge page on x86-64 and most 64-bit ARM systems.
pub const HUGE_PAGE: usize = 2 << 20;

/// Tables of at least this many bytes get their own mapping (smaller ones gain little from huge
/// pages and would waste up to a huge page each at their tail).
pub const MAPPED_FROM: usize = 2 * HUGE_PAGE;

/// A fixed-length table of plain values (`i8`, `f32`, `u32`, ...), zero-initialised, that reads
/// and writes as a slice; large ones live in huge pages (see the [module docs](self)).
pub struct LargeTable<T: Pod> {
    inner: Inner<T>,
}

enum Inner<T> {
    Heap(Vec<T>),
    #[cfg(target_os = "linux")]
    Mapped {
        map: memmap2::MmapMut,
        /// Bytes from the mapping's start to the table's (the first 2 MiB boundary).
        offset: usize,
        /// Values in the table.
        len: usize,
    },
}

impl<T: Pod> LargeTable<T> {
    /// `len` zero values. Large tables are mapped and advised for huge pages before the first
    /// write; where that is refused the table is an ordinary allocation.
    pub fn zeroed(len: usize) -> Self {
        #[cfg(target_os = "linux")]
        if let Some(mapped) = Self::mapped(len) {
            return mapped;
        }
        LargeTable {
            inner: Inner::Heap(vec![T::zeroed(); len]),
        }
    }

    /// A copy of `values` (laid out as [`LargeTable::zeroed`] lays out a table of that length).
    pub fn from_slice(values: &[T]) -> Self {
        let mut t = Self::zeroed(values.len());
        t.copy_from_slice(values);
        t
    }

    /// Whether the table is its own mapping advised for huge pages (whether the kernel granted
    /// them is its choice: `AnonHugePages` in `/proc/self/smaps` tells).
    pub fn is_mapped(&self) -> bool {
        match self.inner {
            Inner::Heap(_) => false,
            #[cfg(target_os = "linux")]
            Inner::Mapped { .. } => true,
        }
    }

    #[cfg(target_os = "linux")]
    fn mapped(len: usize) -> Option<Self> {
        let bytes = len.checked_mul(std::mem::size_of::<T>())?;
        if bytes < MAPPED_FROM {
            return None;
        }
        // Room to start on a 2 MiB boundary and to end on one, so that every huge page the table
        // touches lies inside the mapping; the untouched head and tail cost address space only.
        let span = bytes.checked_next_multiple_of(HUGE_PAGE)?;
        let map = memmap2::MmapMut::map_anon(span.checked_add(HUGE_PAGE)?).ok()?;
        let offset = map.as_ptr().align_offset(HUGE_PAGE);
        if offset >= HUGE_PAGE {
            return None;
        }
        // A hint: without THP in the kernel the pages stay 4 KiB and the table works the same.
        let _ = map.advise_range(memmap2::Advice::HugePage, offset, span);
        Some(LargeTable {
            inner: Inner::Mapped { map, offset, len },
        })
    }
}

impl<T: Pod> Deref for LargeTable<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match &self.inner {
            Inner::Heap(v) => v,
            #[cfg(target_os = "linux")]
            Inner::Mapped { map, offset, len } => {
                // Page-aligned plus a multiple of 2 MiB: aligned for any `T`, so the cast cannot fail.
                bytemuck::cast_slice(&map[*offset..*offset + len * std::mem::size_of::<T>()])
            }
        }
    }
}

impl<T: Pod> DerefMut for LargeTable<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match &mut self.inner {
            Inner::Heap(v) => v,
            #[cfg(target_os = "linux")]
            Inner::Mapped { map, offset, len } => {
                bytemuck::cast_slice_mut(&mut map[*offset..*offset + *len * std::mem::size_of::<T>()])
            }
        }
    }
}

impl<T: Pod> Clone for LargeTable<T> {
    fn clone(&self) -> Self {
        Self::from_slice(self)
    }
}

impl<T: Pod + PartialEq> PartialEq for LargeTable<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for LargeTable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LargeTable")
            .field("len", &self.len())
            .field("mapped", &self.is_mapped())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_tables_are_vectors_and_read_and_write_as_slices() {
        let mut t = LargeTable::<f32>::zeroed(10);
        assert!(!t.is_mapped());
        assert_eq!(&t[..], &[0.0; 10]);
        t[3] = 1.5;
        let c = t.clone();
        assert_eq!(c[3], 1.5);
        assert_eq!(c, t);
        assert!(LargeTable::<i8>::zeroed(0).is_empty());
    }

    #[test]
    fn large_tables_start_on_a_huge_page_and_keep_their_values() {
        let n = MAPPED_FROM + 12_345;
        let mut t = LargeTable::<i8>::zeroed(n);
        assert_eq!(t.len(), n);
        assert!(t.iter().all(|&x| x == 0));
        for (i, x) in t.iter_mut().enumerate() {
            *x = (i % 251) as i8;
        }
        let copy = t.clone();
        assert_eq!(copy, t);
        assert_eq!(copy[n - 1], ((n - 1) % 251) as i8);
        let floats = LargeTable::<f32>::from_slice(&vec![0.25; MAPPED_FROM / 4]);
        assert!(floats.iter().all(|&x| x == 0.25));
        if cfg!(target_os = "linux") {
            assert!(t.is_mapped() && copy.is_mapped() && floats.is_mapped());
            assert_eq!(t.as_ptr() as usize % HUGE_PAGE, 0);
            assert_eq!(floats.as_ptr() as usize % HUGE_PAGE, 0);
        }
    }

    /// Where the kernel offers THP for advised ranges, a written table of several huge pages
    /// gets at least one: the advice reached the kernel before the first write.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_kernel_backs_an_advised_table_with_huge_pages() {
        let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
        if !(mode.contains("[always]") || mode.contains("[madvise]")) {
            eprintln!("THP is off here ({}); nothing to check", mode.trim());
            return;
        }
        let mut t = LargeTable::<u8>::zeroed(4 * HUGE_PAGE);
        t.iter_mut().for_each(|x| *x = 1);
        let start = t.as_ptr() as usize;
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let mut in_table = false;
        let mut huge_kb = None;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ')
                && let Some((lo, hi)) = range.split_once('-')
                && let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                in_table = lo <= start && start < hi;
            } else if in_table && let Some(kb) = line.strip_prefix("AnonHugePages:") {
                huge_kb = kb.trim().trim_end_matches("kB").trim().parse::<usize>().ok();
            }
        }
        let huge_kb = huge_kb.expect("the table's mapping in /proc/self/smaps");
        assert!(
            huge_kb >= 2048,
            "no huge page in the table's mapping (AnonHugePages {huge_kb} kB)"
        );
    }
}
