/**
 * The ISO 4217 currencies the gateway accepts, with their minor-unit exponent. The exponent
 * only decides how an amount is displayed: amounts are integer minor units with the same bounds
 * for every currency (docs/contract.md §11).
 */
export const currencyExponents: Readonly<Record<string, number>> = Object.freeze({
  AUD: 2,
  BRL: 2,
  CAD: 2,
  CHF: 2,
  CNY: 2,
  CZK: 2,
  DKK: 2,
  EUR: 2,
  GBP: 2,
  HKD: 2,
  HUF: 2,
  INR: 2,
  ISK: 0,
  JPY: 0,
  KRW: 0,
  MXN: 2,
  NOK: 2,
  NZD: 2,
  PLN: 2,
  SEK: 2,
  SGD: 2,
  USD: 2,
  ZAR: 2,
  BHD: 3,
  KWD: 3,
});

export function isSupportedCurrency(code: string): boolean {
  return Object.hasOwn(currencyExponents, code);
}
