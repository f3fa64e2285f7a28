"""CNI plugin executables: each module has `execute(env, stdin) -> (rc, stdout)` and `main()`."""
