//! Scratch: runs each line of stdin as a statement and prints rows (temporary).
#![allow(clippy::unwrap_used, clippy::print_stdout)]
use mycelium_protocol::{Execute, NodeSession, Reply};
use mycelium_storage::{SqliteBackend, SqliteOptions};
use std::io::BufRead;

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let backend = SqliteBackend::open(&dir.path().join("n.db"), SqliteOptions::default()).unwrap();
    let mut s = backend.session();
    for line in std::io::stdin().lock().lines() {
        let sql = line.unwrap();
        if sql.trim().is_empty() {
            continue;
        }
        println!("> {sql}");
        match s.execute(Execute::simple(sql.as_str())).await {
            Err(e) => println!("ERR {} {} {:?}", e.code, e.message, e.detail),
            Ok(mut stream) => {
                while let Some(r) = stream.recv().await {
                    match r {
                        Err(e) => {
                            println!("ERR {} {} {:?}", e.code, e.message, e.detail);
                            break;
                        }
                        Ok(Reply::Columns(c)) => println!(
                            "  cols {:?}",
                            c.iter()
                                .map(|c| (c.name.clone(), c.type_oid, c.type_modifier))
                                .collect::<Vec<_>>()
                        ),
                        Ok(Reply::Rows(rows)) => {
                            for row in rows.iter() {
                                let vals: Vec<String> = row
                                    .into_iter()
                                    .map(|v| {
                                        v.map(|b| String::from_utf8_lossy(b).into_owned())
                                            .unwrap_or("NULL".into())
                                    })
                                    .collect();
                                println!("  {}", vals.join(" | "));
                            }
                        }
                        Ok(Reply::Complete { tag }) => {
                            println!("  {tag}");
                            break;
                        }
                    }
                }
            }
        }
    }
}
