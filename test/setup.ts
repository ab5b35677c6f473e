import fc from "fast-check";

// Property tests are reproducible by default: one fixed seed for every run. Set FC_SEED to
// explore other sequences (fast-check prints the seed and path of any counterexample).
fc.configureGlobal({ seed: Number(process.env.FC_SEED ?? 20261121) });
