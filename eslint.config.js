import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

/**
 * Rules that need type information: a promise nobody awaits, or one passed where nothing awaits it.
 * @type {import('eslint').Linter.RulesRecord}
 */
const promiseRules = {
  '@typescript-eslint/no-floating-promises': 'error',
  '@typescript-eslint/no-misused-promises': 'error',
};

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  {
    // Node code: tsconfig.json (found by the project service) has the types.
    files: ['src/**/*.ts', 'test/**/*.ts', 'bench/**/*.js', 'examples/**/*.js', 'scripts/**/*.js'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: promiseRules,
  },
  {
    // Browser code: tsconfig.web.json (DOM, noVNC's types).
    files: ['src/web/static/**/*.js'],
    languageOptions: {
      globals: { ...globals.browser },
      parserOptions: { project: './tsconfig.web.json', tsconfigRootDir: import.meta.dirname },
    },
    rules: promiseRules,
  },
);
