"""Mirror-sync verification (issue 6): do the Ceph, AWS and POSIX copies of a store hold exactly the same objects?

Modules, one job each: `spec` (mirror specifications), `merge` (streaming k-way merge of sorted listings),
`manifest_rows` (the store manifest as a sorted stream), `evidence` (proofs and verdicts per key), `etags`,
`zarrcheck` and `content` (the evidence of each level), `retry`, `checkpoint`, `report`, `repair`, `engine` (one
verification pass) and `run` (verify, plan, repair, verify again). Nothing is written to a mirror unless asked to
repair."""
