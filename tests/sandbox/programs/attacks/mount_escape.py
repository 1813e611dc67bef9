"""Case 23: the mount family of system calls; mountinfo compared before and after."""

from probe import errno_of, read_file, say

MS_BIND, MS_REC, MS_REMOUNT = 0x1000, 0x4000, 0x20
MNT_DETACH = 2
SYS = {"mount": 165, "umount2": 166, "pivot_root": 155, "open_tree": 428, "move_mount": 429,
       "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442}
AT_FDCWD = -100
before = read_file("/proc/self/mountinfo")
say("mount-tmpfs", errno_of(SYS["mount"], b"tmpfs", b"/tmp", b"tmpfs", 0, 0))
say("bind-root", errno_of(SYS["mount"], b"/", b"/box/submission", 0, MS_BIND | MS_REC, 0))
say("remount-usr", errno_of(SYS["mount"], 0, b"/usr", 0, MS_REMOUNT | MS_BIND, 0))
say("umount-usr", errno_of(SYS["umount2"], b"/usr", MNT_DETACH))
say("pivot_root", errno_of(SYS["pivot_root"], b".", b"."))
say("fsopen", errno_of(SYS["fsopen"], b"tmpfs", 0))
say("fspick", errno_of(SYS["fspick"], AT_FDCWD, b"/usr", 0))
say("fsconfig", errno_of(SYS["fsconfig"], 3, 6, 0, 0, 0))
say("fsmount", errno_of(SYS["fsmount"], 3, 0, 0))
say("open_tree", errno_of(SYS["open_tree"], AT_FDCWD, b"/", 1))
say("move_mount", errno_of(SYS["move_mount"], AT_FDCWD, b"/usr", AT_FDCWD, b"/tmp", 0))
say("mount_setattr", errno_of(SYS["mount_setattr"], AT_FDCWD, b"/usr", 0, 0, 0))
say("mountinfo-same", read_file("/proc/self/mountinfo") == before)
