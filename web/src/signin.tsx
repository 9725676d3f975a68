// The sign-in and sign-up screen (sign-up works when the server's `open_registration`
// is on; otherwise the server says registration is closed, and that is shown).

import { useState } from 'preact/hooks';
import { HttpError, login, register, Session } from './api';

export function SignIn({ onSignedIn }: { onSignedIn: (s: Session) => void }) {
  const [mode, setMode] = useState<'in' | 'up'>('in');
  const [user, setUser] = useState('');
  const [password, setPassword] = useState('');
  const [name, setName] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError('');
    try {
      onSignedIn(mode === 'in' ? await login(user, password) : await register(user, password, name));
    } catch (err) {
      setError(
        err instanceof HttpError && err.status === 401
          ? 'Wrong user or password.'
          : err instanceof Error
            ? err.message
            : String(err),
      );
    } finally {
      setBusy(false);
    }
  };

  return (
    <main class="signin" aria-labelledby="signin-title">
      <form onSubmit={submit} class="card">
        <h1 id="signin-title">{mode === 'in' ? 'Sign in to confer' : 'Create an account'}</h1>
        <label>
          User
          <input
            name="user"
            autoComplete="username"
            required
            value={user}
            onInput={(e) => setUser(e.currentTarget.value)}
          />
        </label>
        {mode === 'up' && (
          <label>
            Display name
            <input name="name" autoComplete="name" value={name} onInput={(e) => setName(e.currentTarget.value)} />
          </label>
        )}
        <label>
          Password
          <input
            name="password"
            type="password"
            autoComplete={mode === 'in' ? 'current-password' : 'new-password'}
            required
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
          />
        </label>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy}>
          {mode === 'in' ? 'Sign in' : 'Sign up'}
        </button>
        <button type="button" class="link" onClick={() => (setMode(mode === 'in' ? 'up' : 'in'), setError(''))}>
          {mode === 'in' ? 'No account? Sign up' : 'Have an account? Sign in'}
        </button>
      </form>
    </main>
  );
}
