/**
 * The acquirer (card network) as the gateway sees it. It is idempotent on `idempotencyKey`:
 * authorizing twice with one key returns the first answer. The gateway always derives that key
 * from its own row id (`idem_<id>`), never from the client's key.
 */

export interface AuthorizationRequest {
  /** Derived from the gateway's idempotency row: `idem_<row id>`. */
  readonly idempotencyKey: string;
  readonly kind: 'charge' | 'refund';
  readonly amount: number;
  readonly currency: string;
  /** A card token for a charge; the original authorization id for a refund. */
  readonly source: string;
}

export interface Authorization {
  readonly authorizationId: string;
  readonly approved: boolean;
  /** Why the issuer declined, when it did: `card_declined`, `insufficient_funds`, … */
  readonly declineCode: string | null;
}

/** The acquirer could not answer now (timeout, outage). The same request may succeed later. */
export class AcquirerUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AcquirerUnavailableError';
  }
}

export interface Acquirer {
  /** Throws AcquirerUnavailableError on a transient failure. */
  authorize(request: AuthorizationRequest): Promise<Authorization>;
  /** What the acquirer recorded under this key, if anything. Read-only; for the completer. */
  findAuthorization(idempotencyKey: string): Promise<Authorization | null>;
  close(): Promise<void>;
}
