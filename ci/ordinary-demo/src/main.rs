//! `ordinary-demo GREETING_FILE OUT_FILE`: copies the greeting, upper-cased,
//! into OUT_FILE, which must not exist yet, and prints it.

use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        eprintln!("usage: ordinary-demo GREETING_FILE OUT_FILE");
        std::process::exit(2);
    };
    let greeting = std::fs::read_to_string(input).expect("reading the greeting");
    let loud = greeting.to_uppercase();
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(output)
        .and_then(|mut f| f.write_all(loud.as_bytes()))
        .unwrap_or_else(|e| panic!("writing {output}: {e}"));
    print!("{loud}");
}
