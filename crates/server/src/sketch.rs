//! Distinct-machine sets that merge across any range of days.
//!
//! A set is exact while small (the sorted 64-bit hashes of the machine ids, up to
//! [`SPARSE_MAX`]) and becomes a HyperLogLog with 2^12 one-byte registers beyond that:
//! 4 KiB, mergeable, with a typical relative error of 1.04/sqrt(4096) ≈ 1.6%. Small
//! buckets, the ones the k-anonymity floor judges, are therefore always exact.

/// Largest exact set; past it the set turns into a HyperLogLog.
pub const SPARSE_MAX: usize = 512;
const P: u32 = 12;
const M: usize = 1 << P;

#[derive(Debug, Clone, PartialEq)]
pub enum MachineSet {
    Sparse(Vec<u64>),
    Dense(Box<[u8; M]>),
}

impl Default for MachineSet {
    fn default() -> Self {
        MachineSet::Sparse(Vec::new())
    }
}

/// A stable 64-bit hash of a machine id: FNV-1a followed by a SplitMix64 finaliser so
/// that every bit is well mixed. Stable across builds, unlike std's hasher, because sets
/// are stored.
pub fn machine_hash(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl MachineSet {
    pub fn insert(&mut self, hash: u64) {
        self.insert_changed(hash);
    }

    fn densify(&mut self) {
        if let MachineSet::Sparse(v) = self {
            let mut regs = Box::new([0u8; M]);
            for h in v.iter() {
                add_to_registers(&mut regs, *h);
            }
            *self = MachineSet::Dense(regs);
        }
    }

    /// Adds `hash`; returns whether the set changed.
    pub fn insert_changed(&mut self, hash: u64) -> bool {
        match self {
            MachineSet::Sparse(v) => match v.binary_search(&hash) {
                Ok(_) => false,
                Err(at) => {
                    v.insert(at, hash);
                    if v.len() > SPARSE_MAX {
                        self.densify();
                    }
                    true
                }
            },
            MachineSet::Dense(regs) => add_to_registers(regs, hash),
        }
    }

    /// Adds every machine of `other`; returns whether the set changed.
    pub fn merge(&mut self, other: &MachineSet) -> bool {
        match other {
            // A handful is quicker inserted than merged into a new vector.
            MachineSet::Sparse(hashes) if hashes.len() <= 4 => hashes
                .iter()
                .fold(false, |changed, h| self.insert_changed(*h) | changed),
            MachineSet::Sparse(hashes) => match self {
                MachineSet::Sparse(mine) => {
                    let before = mine.len();
                    *mine = sorted_union(mine, hashes);
                    let changed = mine.len() != before;
                    if mine.len() > SPARSE_MAX {
                        self.densify();
                    }
                    changed
                }
                MachineSet::Dense(regs) => hashes
                    .iter()
                    .fold(false, |changed, h| add_to_registers(regs, *h) | changed),
            },
            MachineSet::Dense(theirs) => self.merge_registers(&theirs[..]),
        }
    }

    /// The union of many sets: their exact hashes sorted together once, rather than each
    /// set merged into a growing one.
    pub fn union<'a>(sets: impl IntoIterator<Item = &'a MachineSet>) -> MachineSet {
        let mut hashes = Vec::new();
        let mut dense: Option<MachineSet> = None;
        for set in sets {
            match set {
                MachineSet::Sparse(v) => hashes.extend_from_slice(v),
                MachineSet::Dense(_) => {
                    dense.get_or_insert_with(MachineSet::default).merge(set);
                }
            }
        }
        hashes.sort_unstable();
        hashes.dedup();
        let mut out = MachineSet::Sparse(hashes);
        if let MachineSet::Sparse(v) = &out
            && v.len() > SPARSE_MAX
        {
            out.densify();
        }
        if let Some(d) = dense {
            out.merge(&d);
        }
        out
    }

    /// [`MachineSet::merge`] with a set as [`MachineSet::to_bytes`] wrote it: a dense one
    /// is merged from the bytes, without a copy of its registers first.
    pub fn merge_bytes(&mut self, bytes: &[u8]) -> bool {
        match bytes.split_first() {
            Some((1, regs)) if regs.len() == M => self.merge_registers(regs),
            _ => self.merge(&MachineSet::from_bytes(bytes)),
        }
    }

    fn merge_registers(&mut self, theirs: &[u8]) -> bool {
        let mut changed = matches!(self, MachineSet::Sparse(_));
        self.densify();
        if let MachineSet::Dense(mine) = self {
            for (a, b) in mine.iter_mut().zip(theirs) {
                if *b > *a {
                    *a = *b;
                    changed = true;
                }
            }
        }
        changed
    }

    /// The number of distinct machines: exact while sparse, estimated once dense.
    pub fn count(&self) -> u64 {
        match self {
            MachineSet::Sparse(v) => v.len() as u64,
            MachineSet::Dense(regs) => estimate(regs),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            MachineSet::Sparse(v) => {
                let mut out = Vec::with_capacity(1 + v.len() * 8);
                out.push(0);
                for h in v {
                    out.extend_from_slice(&h.to_le_bytes());
                }
                out
            }
            MachineSet::Dense(regs) => {
                let mut out = Vec::with_capacity(1 + M);
                out.push(1);
                out.extend_from_slice(&regs[..]);
                out
            }
        }
    }

    /// Reads a stored set; anything malformed reads as empty rather than failing a query.
    pub fn from_bytes(bytes: &[u8]) -> MachineSet {
        match bytes.split_first() {
            Some((0, rest)) => MachineSet::Sparse(
                rest.chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
                    .collect(),
            ),
            Some((1, rest)) if rest.len() == M => {
                let mut regs = Box::new([0u8; M]);
                regs.copy_from_slice(rest);
                MachineSet::Dense(regs)
            }
            _ => MachineSet::default(),
        }
    }
}

/// The union of two sorted lists without duplicates, in one pass over both.
fn sorted_union(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (x, y) = (a[i], b[j]);
        out.push(x.min(y));
        i += usize::from(x <= y);
        j += usize::from(y <= x);
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

fn add_to_registers(regs: &mut [u8; M], hash: u64) -> bool {
    let index = (hash >> (64 - P)) as usize;
    let rest = hash << P;
    let rank = (rest.leading_zeros().min(64 - P) + 1) as u8;
    let changed = regs[index] < rank;
    if changed {
        regs[index] = rank;
    }
    changed
}

fn estimate(regs: &[u8; M]) -> u64 {
    let m = M as f64;
    let alpha = 0.7213 / (1.0 + 1.079 / m);
    // 2^-r built from its exponent bits: powi was most of an estimate's cost.
    let sum: f64 = regs
        .iter()
        .map(|&r| f64::from_bits((1023 - u64::from(r.min(64))) << 52))
        .sum();
    let raw = alpha * m * m / sum;
    let zeros = regs.iter().filter(|&&r| r == 0).count();
    let e = if raw <= 2.5 * m && zeros > 0 {
        m * (m / zeros as f64).ln()
    } else {
        raw
    };
    e.round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_union_equals_merging_one_by_one() {
        let set = |from: u64, n: u64| {
            let mut s = MachineSet::default();
            for i in from..from + n {
                s.insert(machine_hash(&format!("m{i}")));
            }
            s
        };
        // Overlapping exact sets that stay exact, that turn dense together, and a dense one.
        for sets in [
            vec![set(0, 3), set(2, 40), set(30, 100)],
            vec![set(0, 300), set(200, 300), set(450, 10)],
            vec![set(0, 5), set(0, 2000), set(1990, 20)],
        ] {
            let mut one_by_one = MachineSet::default();
            for s in &sets {
                one_by_one.merge(s);
            }
            assert_eq!(MachineSet::union(&sets), one_by_one);
        }
    }

    fn set_of(range: std::ops::Range<u32>) -> MachineSet {
        let mut s = MachineSet::default();
        for i in range {
            s.insert(machine_hash(&format!("machine-{i}")));
        }
        s
    }

    #[test]
    fn exact_while_small_and_round_trips() {
        let mut s = set_of(0..300);
        s.insert(machine_hash("machine-5"));
        assert_eq!(s.count(), 300);
        assert_eq!(MachineSet::from_bytes(&s.to_bytes()), s);
        let mut t = set_of(200..400);
        t.merge(&s);
        assert_eq!(t.count(), 400);
    }

    #[test]
    fn merges_equal_inserting_every_machine() {
        // Unions that stay exact, that turn into a HyperLogLog, and of mixed kinds end
        // where inserting each machine would, whichever side merges into the other.
        for (a, b) in [(0..100, 50..300), (0..400, 300..700), (10..20, 0..2000)] {
            let mut merged = set_of(a.clone());
            assert!(merged.merge(&set_of(b.clone())));
            let mut other = set_of(b.clone());
            other.merge(&set_of(a.clone()));
            assert_eq!(merged, other);
            assert_eq!(merged, set_of(a.start.min(b.start)..a.end.max(b.end)));
            assert!(!merged.clone().merge(&set_of(b)), "nothing new to add");
        }
    }

    #[test]
    fn dense_estimates_within_error_and_merges() {
        for n in [1_000u32, 20_000, 200_000] {
            let s = set_of(0..n);
            let err = (s.count() as f64 - f64::from(n)).abs() / f64::from(n);
            assert!(err < 0.05, "n={n} estimate={} err={err}", s.count());
            assert_eq!(MachineSet::from_bytes(&s.to_bytes()), s);
        }
        let mut a = set_of(0..30_000);
        a.merge(&set_of(15_000..45_000));
        let err = (a.count() as f64 - 45_000.0).abs() / 45_000.0;
        assert!(err < 0.05, "{}", a.count());
    }

    #[test]
    fn hash_is_stable() {
        assert_eq!(machine_hash("abc"), machine_hash("abc"));
        assert_ne!(machine_hash("abc"), machine_hash("abd"));
        assert_eq!(MachineSet::from_bytes(b"garbage").count(), 0);
    }
}
