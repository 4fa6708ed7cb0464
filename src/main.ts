/**
 * regcred's entry point (the module the image runs). The operator itself arrives with the
 * operator issue; until then this only says so, and fails, rather than pretending to work.
 */
process.stderr.write('regcred: the operator is not implemented yet; see README.md\n');
process.exit(1);
