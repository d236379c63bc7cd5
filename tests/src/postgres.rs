//! A PostgreSQL database of its own for one test, on the server
//! `scripts/postgresql` starts (role tocsin/tocsin), dropped when the test
//! ends.

use std::process::Command;

/// The server's maintenance database, as the tests' role.
const ADMIN_URL: &str = "postgresql://tocsin:tocsin@127.0.0.1:5432/postgres";

/// A database created for one test.
#[derive(Debug)]
pub struct TestDatabase {
    /// Its name.
    pub name: String,
}

impl TestDatabase {
    /// Creates `tocsin_test_<random>`.
    pub fn create() -> Self {
        let name = format!("tocsin_test_{}", uuid::Uuid::new_v4().simple());
        psql(&format!("CREATE DATABASE {name}"));
        TestDatabase { name }
    }

    /// Its URL, as `[database] connection` takes it.
    pub fn url(&self) -> String {
        format!("postgresql://tocsin:tocsin@127.0.0.1:5432/{}", self.name)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        psql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

fn psql(statement: &str) {
    let output = Command::new("psql")
        .args([ADMIN_URL, "-v", "ON_ERROR_STOP=1", "-q", "-c", statement])
        .output()
        .unwrap_or_else(|e| panic!("psql (run scripts/postgresql): {e}"));
    assert!(output.status.success(), "{statement}: {}", String::from_utf8_lossy(&output.stderr));
}
