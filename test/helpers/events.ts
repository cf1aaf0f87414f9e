/** The event fixtures live in scripts/harness/ so benches can use them too (scripts never import test/). */
export * from '../../scripts/harness/events';
