//! Writes the forged components of [`tocsin_tests::forge`] the tests use
//! (the hostile ones and a well-behaved one) into a directory, for
//! `scripts/compile-figures`.

use std::path::PathBuf;
use std::process::ExitCode;

use tocsin_tests::forge::Forge;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: forge-components DIRECTORY");
        return ExitCode::from(2);
    };
    let components = [
        ("forged-notifier", Forge::default()),
        ("wrong-signature", Forge { wrong_signature: true, ..Forge::default() }),
        ("memory-64mib", Forge { memory_pages: 1024, ..Forge::default() }),
        ("table-120k", Forge { table_entries: Some(120_000), ..Forge::default() }),
        ("bomb-100k-functions", Forge { bomb_functions: 100_000, bomb_repeats: 2, ..Forge::default() }),
    ];
    for (name, forge) in components {
        let path = dir.join(format!("{name}.wasm"));
        if let Err(error) = std::fs::write(&path, forge.component()) {
            eprintln!("forge-components: cannot write {}: {error}", path.display());
            return ExitCode::FAILURE;
        }
        println!("{}", path.display());
    }
    ExitCode::SUCCESS
}
