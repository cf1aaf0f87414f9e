/**
 * Scalars. DateTime passes stored ISO strings through untouched (replays must be byte-stable) and
 * serialises a Date as ISO 8601 UTC with milliseconds, the one format the gateway writes.
 */
import { GraphQLError, GraphQLScalarType, Kind } from 'graphql';
export { GraphQLJSON as JSONScalar } from 'graphql-scalars';

const isoDateTime = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;

export const DateTimeScalar = new GraphQLScalarType<Date, string>({
  name: 'DateTime',
  description: 'An instant in ISO 8601, UTC, with milliseconds: 2026-11-24T13:45:00.123Z.',
  serialize(value) {
    if (value instanceof Date) return value.toISOString();
    if (typeof value === 'string' && isoDateTime.test(value)) return value;
    throw new GraphQLError(`DateTime cannot represent ${String(value)}`);
  },
  parseValue(value) {
    if (typeof value !== 'string' || !isoDateTime.test(value)) throw new GraphQLError('DateTime must be ISO 8601 UTC');
    return new Date(value);
  },
  parseLiteral(ast) {
    if (ast.kind !== Kind.STRING || !isoDateTime.test(ast.value))
      throw new GraphQLError('DateTime must be ISO 8601 UTC');
    return new Date(ast.value);
  },
});
