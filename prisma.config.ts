// Prisma 7 reads its CLI settings from here. Only `prisma generate` is used: migrations are plain
// SQL under db/migrations, applied by dbmate (see docs/migrations.md).
import { defineConfig } from 'prisma/config';

export default defineConfig({
  schema: 'prisma/schema.prisma',
});
