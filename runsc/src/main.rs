//! `runsc`: the command-line front end (placeholder while the CLI lands).

fn main() {
    println!("runsc");
}
