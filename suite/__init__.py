"""The suite's tooling around the two trainers: build and run them (harness), AOTInductor packages (aoti),
the results schema's validator (schema), accuracy thresholds, the report and the GPU session."""
