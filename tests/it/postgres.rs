//! A real server that refuses root: PostgreSQL's `initdb` and `postgres`
//! as a user of the sandbox's own, in several sandboxes at once, queried
//! with `psql` and stopped by SIGTERM through the `Child`.

use std::io::BufRead;
use std::process::Stdio;

use hermetic::Sandbox;

/// PostgreSQL's programs (Debian: /usr/lib/postgresql/VERSION/bin; CI
/// installs the package where it is missing).
fn pg_bin() -> std::path::PathBuf {
    let mut found: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (Debian: apt-get install postgresql)")
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|b| b.join("initdb").exists())
        .collect();
    found.sort();
    found
        .pop()
        .expect("no PostgreSQL with initdb in /usr/lib/postgresql")
}

/// initdb, postgres on 127.0.0.1:5432, a query, then SIGTERM: what the
/// query returned and how the server ended.
fn serve_and_query(n: u32) -> (String, std::process::ExitStatus) {
    let bin = pg_bin();
    let ns = Sandbox::builder().user(1000, 1000).build().unwrap();
    let init = ns
        .command(bin.join("initdb"))
        .args(["-D", "/tmp/pg", "-U", "test", "--auth=trust", "--no-sync"])
        .output()
        .unwrap();
    assert!(init.status.success(), "initdb: {init:?}");
    let mut server = ns
        .command(bin.join("postgres"))
        .args(["-D", "/tmp/pg", "-k", "/tmp", "-p", "5432"])
        .args(["-c", "listen_addresses=127.0.0.1"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the server's own word that it is ready.
    let mut log = std::io::BufReader::new(server.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(
            log.read_line(&mut line).unwrap() > 0,
            "postgres ended:\n{seen}"
        );
        seen.push_str(&line);
        if line.contains("ready to accept connections") {
            break;
        }
    }
    let query = ns
        .command(bin.join("psql"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            "5432",
            "-U",
            "test",
            "-d",
            "postgres",
            "-tA",
        ])
        .args([
            "-c",
            &format!("select {n} * 10 + current_setting('port')::int"),
        ])
        .output()
        .unwrap();
    assert!(query.status.success(), "psql: {query:?}");
    // SAFETY: a signal to our own child (its relay passes it on).
    assert_eq!(unsafe { libc::kill(server.id() as i32, libc::SIGTERM) }, 0);
    // Drain the log so that the server never blocks writing it.
    std::thread::spawn(move || std::io::copy(&mut log, &mut std::io::sink()));
    let status = server.wait().unwrap();
    (String::from_utf8(query.stdout).unwrap(), status)
}

#[test]
fn postgres_serves_on_5432_in_several_sandboxes_at_once() {
    let handles: Vec<_> = (1..=3)
        .map(|n| std::thread::spawn(move || (n, serve_and_query(n))))
        .collect();
    for h in handles {
        let (n, (answer, status)) = h.join().unwrap();
        assert_eq!(answer.trim(), (n * 10 + 5432).to_string());
        // A smart shutdown on SIGTERM: exit status 0.
        assert!(status.success(), "postgres {n}: {status:?}");
    }
}
