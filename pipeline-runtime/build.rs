//! Names for the target groups the worker hook's constructor sections depend on, so that the
//! lists are written once.

fn main() {
    cfg_aliases::cfg_aliases! {
        elf: { any(
            target_os = "linux",
            target_os = "android",
            target_os = "freebsd",
            target_os = "netbsd",
            target_os = "openbsd",
            target_os = "dragonfly",
            target_os = "illumos"
        ) },
        mach_o: { any(target_os = "macos", target_os = "ios") },
    }
}
