use clap::Parser;

fn main() -> anyhow::Result<()> {
    mycelium_bench::main(mycelium_bench::Cli::parse())
}
