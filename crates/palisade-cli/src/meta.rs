//! The commands about the command: shell completion scripts and man pages, both generated from
//! the clap definitions so they never drift from the flags.

use std::path::PathBuf;

use clap_complete::Shell;

#[derive(clap::Args)]
pub struct CompletionArgs {
    /// bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    shell: Shell,
}

#[derive(clap::Args)]
pub struct ManArgs {
    /// Directory to write into (created if missing), e.g. /usr/local/share/man/man1.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// Prints the completion script for `args.shell` on stdout.
pub fn completion(args: CompletionArgs, bin_name: &'static str) -> u8 {
    // The kubectl plugin is completed through kubectl, which knows it as `palisade`'s own words.
    let name = bin_name.rsplit(' ').next().unwrap_or(bin_name);
    let mut cmd = crate::command(bin_name);
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, name, &mut out);
    crate::emit(&String::from_utf8_lossy(&out));
    0
}

/// Writes `palisade.1` and `palisade-COMMAND.1` for every command into `args.out`, and names
/// each file on stdout.
pub fn man(args: ManArgs) -> u8 {
    match write_pages(&args.out) {
        Ok(files) => {
            crate::emit(&files.iter().map(|f| format!("{}\n", f.display())).collect::<String>());
            0
        }
        Err(e) => {
            eprintln!("error: {}: {e}", args.out.display());
            crate::EXIT_INVALID
        }
    }
}

fn write_pages(dir: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = crate::command("palisade");
    cmd.build();
    let mut written = Vec::new();
    let mut page = |cmd: clap::Command, file: String| -> std::io::Result<()> {
        let mut text = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut text)?;
        let path = dir.join(file);
        std::fs::write(&path, text)?;
        written.push(path);
        Ok(())
    };
    page(cmd.clone(), "palisade.1".into())?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        // The page's title and usage name the command as typed: `palisade check`.
        let name = format!("palisade-{}", sub.get_name());
        page(sub.clone().name(name.clone()).bin_name(format!("palisade {}", sub.get_name())), format!("{name}.1"))?;
    }
    Ok(written)
}
