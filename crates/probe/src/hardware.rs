//! CPU count, memory and disk size, the last two rounded into coarse buckets.

use crate::rooted::Root;
use crate::{Fact, UNKNOWN};

const MIB: u64 = 1024 * 1024;
const GIB_IN_MIB: u64 = 1024;
const TIB_IN_MIB: u64 = 1024 * 1024;

/// Memory buckets run from 256 MiB to 512 GiB; more is reported as ">512GiB".
pub(crate) const RAM_BUCKETS_MIB: (u64, u64) = (256, 512 * GIB_IN_MIB);
/// Disk buckets run from 8 GiB to 64 TiB; more is reported as ">64TiB".
pub(crate) const DISK_BUCKETS_MIB: (u64, u64) = (8 * GIB_IN_MIB, 64 * TIB_IN_MIB);

/// Block devices that are not disks of their own: loop and RAM devices, compressed swap,
/// optical and floppy drives, network block devices, and device-mapper and software RAID
/// volumes, which sit on top of disks already counted.
const NOT_DISKS: &[&str] = &["loop", "ram", "zram", "dm-", "md", "sr", "fd", "nbd"];

/// Logical CPUs the kernel has online, or those `/proc/cpuinfo` lists.
pub(crate) fn cpu_count(root: Root<'_>) -> (Option<u32>, String) {
    let online = "/sys/devices/system/cpu/online";
    if let Some(count) = root.first_line(online).and_then(|l| count_cpu_list(&l)) {
        return (Some(count), online.into());
    }
    if let Some(cpuinfo) = root.read("/proc/cpuinfo") {
        let count = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        if let Ok(count @ 1..) = u32::try_from(count) {
            return (Some(count), "/proc/cpuinfo".into());
        }
    }
    (None, "none-found".into())
}

/// Counts a kernel CPU list such as "0-3,6,8-11"; `None` if malformed or empty.
fn count_cpu_list(list: &str) -> Option<u32> {
    let mut total: u32 = 0;
    for part in list.trim().split(',') {
        let count = match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi): (u32, u32) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
                hi.checked_sub(lo)?.checked_add(1)?
            }
            None => {
                part.trim().parse::<u32>().ok()?;
                1
            }
        };
        total = total.checked_add(count)?;
    }
    (total > 0).then_some(total)
}

/// `MemTotal` from `/proc/meminfo`, bucketed.
pub(crate) fn total_ram(root: Root<'_>) -> Fact {
    let kib = root.read("/proc/meminfo").and_then(|text| {
        text.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
    });
    match kib.and_then(|k| k.checked_mul(1024)) {
        Some(bytes) if bytes > 0 => Fact::new(bucket(bytes, RAM_BUCKETS_MIB), "/proc/meminfo"),
        _ => Fact::new(UNKNOWN, "none-found"),
    }
}

/// The sum of all whole disks in `/sys/block`, bucketed. Removable media are left out.
pub(crate) fn total_disk(root: Root<'_>) -> Fact {
    let mut bytes: u64 = 0;
    for dev in root.list("/sys/block") {
        if NOT_DISKS.iter().any(|p| dev.starts_with(p)) {
            continue;
        }
        if root
            .first_line(&format!("/sys/block/{dev}/removable"))
            .as_deref()
            == Some("1")
        {
            continue;
        }
        // Always counted in 512-byte sectors, whatever the device's own sector size.
        let sectors = root
            .first_line(&format!("/sys/block/{dev}/size"))
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        bytes = bytes.saturating_add(sectors.saturating_mul(512));
    }
    if bytes == 0 {
        Fact::new(UNKNOWN, "none-found")
    } else {
        Fact::new(bucket(bytes, DISK_BUCKETS_MIB), "/sys/block")
    }
}

/// Rounds up to the next power of two, clamped to `[min, max]` MiB; above `max` the label
/// is ">max". Labels use MiB below 1 GiB, GiB below 1 TiB, TiB above.
pub(crate) fn bucket(bytes: u64, (min_mib, max_mib): (u64, u64)) -> String {
    let mib = bytes.div_ceil(MIB);
    let rounded = mib.checked_next_power_of_two().unwrap_or(u64::MAX);
    if rounded > max_mib {
        return format!(">{}", label(max_mib));
    }
    label(rounded.max(min_mib))
}

fn label(mib: u64) -> String {
    if mib >= TIB_IN_MIB {
        format!("{}TiB", mib / TIB_IN_MIB)
    } else if mib >= GIB_IN_MIB {
        format!("{}GiB", mib / GIB_IN_MIB)
    } else {
        format!("{mib}MiB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::Tree;

    const GIB: u64 = 1024 * MIB;

    #[test]
    fn cpu_lists() {
        assert_eq!(count_cpu_list("0"), Some(1));
        assert_eq!(count_cpu_list("0-3"), Some(4));
        assert_eq!(count_cpu_list("0-3,6,8-11\n"), Some(9));
        assert_eq!(count_cpu_list(""), None);
        assert_eq!(count_cpu_list("3-1"), None);
        assert_eq!(count_cpu_list("0-x"), None);
        assert_eq!(count_cpu_list("0-4294967295"), None);
    }

    #[test]
    fn cpu_count_falls_back_to_cpuinfo() {
        let tree = Tree::new(
            "hw-cpuinfo",
            &[(
                "/proc/cpuinfo",
                b"processor\t: 0\nflags\t: fpu\n\nprocessor\t: 1\n",
            )],
        );
        assert_eq!(
            cpu_count(Root::new(tree.path())),
            (Some(2), "/proc/cpuinfo".to_string())
        );
        let empty = Tree::new("hw-nocpu", &[]);
        assert_eq!(
            cpu_count(Root::new(empty.path())),
            (None, "none-found".to_string())
        );
    }

    #[test]
    fn ram_buckets_round_up_what_the_kernel_reserves() {
        // MemTotal is a little below the installed size.
        assert_eq!(bucket(16 * GIB - 300 * MIB, RAM_BUCKETS_MIB), "16GiB");
        assert_eq!(bucket(16 * GIB, RAM_BUCKETS_MIB), "16GiB");
        assert_eq!(bucket(12 * GIB, RAM_BUCKETS_MIB), "16GiB");
        assert_eq!(bucket(460 * MIB, RAM_BUCKETS_MIB), "512MiB");
        assert_eq!(bucket(64 * MIB, RAM_BUCKETS_MIB), "256MiB");
        assert_eq!(bucket(1, RAM_BUCKETS_MIB), "256MiB");
        assert_eq!(bucket(512 * GIB, RAM_BUCKETS_MIB), "512GiB");
        assert_eq!(bucket(768 * GIB, RAM_BUCKETS_MIB), ">512GiB");
        assert_eq!(bucket(u64::MAX, RAM_BUCKETS_MIB), ">512GiB");
    }

    #[test]
    fn disk_buckets() {
        let tb = 1_000_000_000_000u64;
        assert_eq!(bucket(tb, DISK_BUCKETS_MIB), "1TiB");
        assert_eq!(bucket(500_000_000_000, DISK_BUCKETS_MIB), "512GiB");
        assert_eq!(bucket(2 * GIB, DISK_BUCKETS_MIB), "8GiB");
        assert_eq!(bucket(3 * tb, DISK_BUCKETS_MIB), "4TiB");
        assert_eq!(bucket(100 * tb, DISK_BUCKETS_MIB), ">64TiB");
    }

    #[test]
    fn disks_skip_virtual_devices_and_removable_media() {
        let tree = Tree::new(
            "hw-disks",
            &[
                ("/sys/block/nvme0n1/size", b"1000215216\n"),
                ("/sys/block/nvme0n1/removable", b"0\n"),
                ("/sys/block/sda/size", b"1953525168\n"),
                ("/sys/block/sdb/size", b"60437492\n"),
                ("/sys/block/sdb/removable", b"1\n"),
                ("/sys/block/loop0/size", b"999999999999\n"),
                ("/sys/block/dm-0/size", b"999999999999\n"),
                ("/sys/block/md0/size", b"999999999999\n"),
                ("/sys/block/zram0/size", b"999999999999\n"),
                ("/sys/block/sr0/size", b"2097151\n"),
            ],
        );
        // 512 GB + 1 TB = 1.36 TiB
        assert_eq!(
            total_disk(Root::new(tree.path())),
            Fact::new("2TiB", "/sys/block")
        );
    }

    #[test]
    fn garbage_sizes_are_unknown() {
        let tree = Tree::new(
            "hw-garbage",
            &[
                ("/sys/block/sda/size", b"lots\n"),
                ("/proc/meminfo", b"MemTotal: many kB\n"),
            ],
        );
        let root = Root::new(tree.path());
        assert_eq!(total_disk(root), Fact::new(UNKNOWN, "none-found"));
        assert_eq!(total_ram(root), Fact::new(UNKNOWN, "none-found"));
    }
}
