// Entry point: the signed-in user's session (kept in localStorage, so a reload stays
// signed in until the token expires or is refused) picks the sign-in screen or the app.

import { render } from 'preact';
import { useState } from 'preact/hooks';
import { logout, Session, setFileCookie } from './api';
import { App } from './app';
import { SignIn } from './signin';
import './style.css';

const KEY = 'confer.session';

function stored(): Session | null {
  try {
    const s = JSON.parse(localStorage.getItem(KEY) || 'null') as Session | null;
    if (s && s.expires_at * 1000 > Date.now()) return s;
  } catch {
    /* a broken entry is no session */
  }
  return null;
}

function Root() {
  const [session, setSession] = useState<Session | null>(() => {
    const s = stored();
    setFileCookie(s?.session ?? null);
    return s;
  });
  const signedIn = (s: Session) => {
    localStorage.setItem(KEY, JSON.stringify(s));
    setFileCookie(s.session);
    setSession(s);
  };
  const signOut = (revoke: boolean) => {
    if (session && revoke) void logout(session.session);
    localStorage.removeItem(KEY);
    setFileCookie(null);
    setSession(null);
  };
  return session ? (
    <App key={session.session} session={session} onSignOut={signOut} />
  ) : (
    <SignIn onSignedIn={signedIn} />
  );
}

const root = document.getElementById('app');
if (root) render(<Root />, root);
