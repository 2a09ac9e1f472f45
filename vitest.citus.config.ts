import { defineConfig } from 'vitest/config';
import base from './vitest.config.ts';

/**
 * The tests that pass on a Citus coordinator today (`npm run test:citus` with TEST_DATABASE_URL at
 * one; README, "Citus: scaling out"). The rest of the suite is not yet Citus-clean; what fails
 * there, by cause (issue 13 stays open for them):
 *   - SECURITY DEFINER functions that write (the admin functions, the spend functions) and the
 *     service role touching the same rows in one transaction: Citus refuses a placement modified
 *     over one user's connection and then used over another's ("cannot perform query on
 *     placements that were modified in this transaction by a different user"). Needs the
 *     functions delegated to the workers (create_distributed_function with the tenant argument).
 *   - recordUsage's one-statement charge: data-modifying CTEs are planned as subplans on Citus.
 *   - plan tests that read the local plan's nodes (Citus wraps them in its remote plan), and
 *     migration tests that need a database without Citus's maintenance daemon connected.
 *   - deleteMessageBranch and purge: the ON DELETE SET NULL (column) keys are soft on Citus (0020),
 *     so the clearing they did must move into the functions.
 */
// Not mergeConfig(): it would add these to the base config's include, not replace it.
export default defineConfig({
  ...base,
  test: {
    ...base.test,
    include: [
      'tests/citus/**/*.test.ts',
      'tests/security/tenant-wall.test.ts',
      'tests/security/app-user-powers.test.ts',
      'tests/migrations/catalog-gate.test.ts',
      'tests/migrations/round-trip.test.ts',
      'tests/db/with-tenant.test.ts',
      'tests/queries/users.test.ts',
      'tests/studio/read-only.test.ts',
    ],
  },
});
