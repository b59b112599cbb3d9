//! Attacks of round 13: the newest code of `hermetic run` and the
//! library: the program's stdin and outputs handed on through pipes of
//! hermetic's (`src/bin/hermetic/input.rs`, `outputs.rs`), the host's
//! `/dev/null` replaced by the sandbox's own (`init/main.rs`,
//! `src/child/exec.rs`), `hermetic enter`'s user (`src/sandbox/kept.rs`).
//! Each test failed while its hole was open; all are mended but one, kept
//! and documented (two programs reading one pipe at once).

use crate::common;

use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::process::Stdio;

/// What was done: `hermetic run --bind EMPTY_DIR:/dev -- sh -c 'stat -L
/// /proc/self/fd/0'` with stdin the host's `/dev/null` (`</dev/null`,
/// as CI runners and `nohup` give it).
///
/// What happened: the init process replaces a host `/dev/null` on the
/// program's stdio with the sandbox's own only if it can open
/// `/dev/null` inside; where it cannot (nothing there: a directory bound
/// over `/dev`; a directory bound at `/dev/null`) it silently hands on the
/// host's, on the host's `/dev` mount. As root, the program then changed
/// the host's `/dev/null` through `/proc/self/fd/0`: `chmod`, `chown` and
/// `touch -d 2001-01-01` all succeeded (mode 000 would break every
/// program on the host); rootless, it can set its times (write access).
/// The library's `command()` fails closed in the same case (its
/// `dev_null_onto` error ends the spawn).
///
/// Modes: `hermetic run`, root and rootless (the fd is the host's in
/// both; root can change it).
#[test]
fn host_dev_null_is_handed_on_where_the_sandbox_has_none() {
    let empty = tempfile::Builder::new()
        .prefix("atk13-dev-")
        .tempdir()
        .unwrap();
    let host = std::fs::metadata("/dev/null").unwrap();
    let mut child = common::hermetic_command()
        .args(["run", "--timeout", "20", "--bind"])
        .arg(format!("{}:/dev", empty.path().display()))
        .args(["--", "/bin/sh", "-c", "stat -L -c '%d %i' /proc/self/fd/0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = common::wait_bounded(&mut child);
    let out = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Not started at all is right too: the sandbox has no /dev/null to
    // give it.
    if !status.success() {
        assert!(said.is_empty(), "{status}: {said} {stderr}");
        return;
    }
    assert_ne!(
        said.trim(),
        format!("{} {}", host.dev(), host.ino()),
        "the program's stdin is the host's /dev/null (its dev and inode), \
         which it can reopen on the host's /dev: {stderr}"
    );
}

/// What was done: `hermetic run -- head -c 100000 /dev/zero | (sleep 4;
/// wc -c)`: a program that writes more than one pipe's worth and ends,
/// read by a reader that is slow to start (a pager, `less`, showing its
/// first screen; a runner busy with another job's output).
///
/// What happened: `wc` counted 65536, not 100000, and hermetic exited 0.
/// What the program wrote is relayed by a thread of hermetic's through a
/// pipe of its own; once the program has ended, hermetic waits for that
/// thread at most 2 s (250 ms in a kept sandbox) and exits, and what the
/// thread still held, or the program's pipe still had, is lost without a
/// word. Without hermetic the program's writes wait for the reader, and
/// nothing is lost.
///
/// Modes: `hermetic run`, root and rootless, stdout (and stderr) a pipe
/// (or a socket) whose reader is slow.
#[test]
fn output_is_lost_when_the_reader_is_slow() {
    let mut child = common::hermetic_command()
        .args(["run", "--timeout", "20", "--"])
        .args(["head", "-c", "100000", "/dev/zero"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    // The reader is slow: it reads once hermetic has ended, or after 6 s
    // (by when a hermetic that waits for its reader has not ended).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(6);
    let ended = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut got = Vec::new();
    let reading = std::thread::spawn(move || {
        std::io::Read::read_to_end(&mut stdout, &mut got).unwrap();
        got
    });
    let status = ended.unwrap_or_else(|| common::wait_bounded(&mut child));
    let got = reading.join().unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(
        got.len(),
        100000,
        "what the program wrote reached the slow reader only in part, and \
         hermetic said nothing ({status})"
    );
}

/// What was done: `hermetic run -- sh -c 'echo a; echo b >&2; echo c'
/// 2>/dev/stdout | cat` (stderr a second open file of stdout's pipe, as
/// `2>/dev/stdout` makes one), here 3000 such lines each way.
///
/// What happened: `cat` printed `a c b`; over 3000 pairs, tens were out
/// of order. `>FILE 2>&1` (one open file) shares one relay pipe, but two
/// open files of one pipe or socket get two relays, two threads that copy
/// at their own pace into the same pipe, so that what the program wrote
/// in order reaches the reader out of order. Without hermetic each write
/// lands in the pipe in the order made.
///
/// Modes: `hermetic run`, root and rootless.
#[test]
fn outputs_into_one_pipe_through_two_open_files_are_reordered() {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    // A second open file of the same pipe, as `2>/dev/stdout` opens one.
    let again = std::fs::OpenOptions::new()
        .write(true)
        .open(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&write)
        ))
        .unwrap();
    let mut child = common::hermetic_command()
        .args(["run", "--timeout", "20", "--", "/bin/sh", "-c"])
        .arg("i=0; while [ $i -lt 3000 ]; do i=$((i+1)); echo o$i; echo e$i >&2; done")
        .stdin(Stdio::null())
        .stdout(Stdio::from(write))
        .stderr(Stdio::from(again))
        .spawn()
        .unwrap();
    let reading = std::thread::spawn(move || {
        let mut got = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(read), &mut got).unwrap();
        got
    });
    let status = common::wait_bounded(&mut child);
    drop(child);
    let got = reading.join().unwrap();
    assert!(status.success(), "{status}");
    let expected: String = (1..=3000).map(|i| format!("o{i}\ne{i}\n")).collect();
    let first_difference = got.lines().zip(expected.lines()).position(|(a, b)| a != b);
    assert!(
        got == expected,
        "the program's lines reached the pipe out of order, first at line {first_difference:?}"
    );
}

/// What was done: `hermetic run -- cat 0>&1 | cat`: stdin the write end
/// of a pipe (or a FIFO opened for writing), whose reader is alive.
///
/// What happened: `cat` waited for input until `--timeout` killed it;
/// without hermetic it fails at once (`cat: -: Bad file descriptor`).
/// The stdin pump takes any FIFO for a pipe to copy from with `tee`, and
/// waits for it to be readable, which a write end never is: the program
/// gets a pipe that never ends, where it had an fd it could not read.
///
/// Modes: `hermetic run`, root and rootless.
#[test]
fn a_write_only_pipe_on_stdin_hangs_the_program() {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let mut child = common::hermetic_command()
        .args(["run", "--timeout", "5", "--", "cat"])
        .stdin(Stdio::from(write))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = common::wait_bounded(&mut child);
    let out = child.wait_with_output().unwrap();
    drop(read);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Bad file descriptor"),
        "cat, whose stdin it cannot read, was not told so: it waited ({status}): {stderr}"
    );
}

/// What was done: `seq 1 100000 | { hermetic run -- cat & hermetic run
/// -- cat; wait; } | wc -c`: two programs reading one pipe, as workers
/// of a job queue share one (`while read job` in each).
///
/// What happened: 592991 bytes, 4096 more than `seq` wrote (588895,
/// which is what plain `{ cat & cat; }` gives, every time): a page was
/// read by both. Each stdin pump copies the caller's pipe with `tee`,
/// which takes nothing, so both programs are given the same page; each
/// pump then takes as many bytes as its program read, whichever they
/// are, so that what one reader took is read by another again, and
/// bytes are dropped unread (589824 once in 15). Without
/// hermetic every byte goes to one reader only.
///
/// Modes: `hermetic run`, root and rootless (stdin a pipe or FIFO shared
/// with another reader).
#[test]
#[ignore = "kept: two hermetic runs reading one pipe at once may read the same bytes (README: the fds row)"]
fn two_programs_sharing_a_pipe_read_the_same_bytes() {
    // Three tries: the programs race for the pipe (most often, each time).
    for _ in 0..3 {
        let (total, got, statuses) = two_programs_read_one_pipe();
        assert!(statuses.iter().all(|s| s.success()), "{statuses:?}");
        assert_eq!(
            got, total,
            "the two programs read {got} bytes between them, of the {total} written into their pipe"
        );
    }
}

/// Two `hermetic run -- cat` reading one pipe, into which 588895 bytes
/// are written: those, what the two read between them, and how they
/// ended.
fn two_programs_read_one_pipe() -> (usize, usize, [std::process::ExitStatus; 2]) {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let data: Vec<u8> = (1..=100000)
        .flat_map(|i| format!("{i}\n").into_bytes())
        .collect();
    let total = data.len();
    let start = |stdin: OwnedFd| {
        let mut child = common::hermetic_command()
            .args(["run", "--timeout", "10", "--", "cat"])
            .stdin(Stdio::from(stdin))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let reading = std::thread::spawn(move || {
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut stdout, &mut got).unwrap();
            got.len()
        });
        (child, reading)
    };
    let (mut first, first_reading) = start(read.try_clone().unwrap());
    let (mut second, second_reading) = start(read);
    let writing = std::thread::spawn(move || {
        // Fails (EPIPE) if both programs have ended before the end.
        let _ = std::io::Write::write_all(&mut std::fs::File::from(write), &data);
    });
    let statuses = [
        common::wait_bounded(&mut first),
        common::wait_bounded(&mut second),
    ];
    writing.join().unwrap();
    let got = first_reading.join().unwrap() + second_reading.join().unwrap();
    (total, got, statuses)
}
