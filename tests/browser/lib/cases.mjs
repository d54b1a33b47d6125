// Cases the browser suites seed (with seedCase from vakt.mjs), defined once so the
// suites tell the same story of the same people.

/** A high-risk case in Stockholm: home and workplace zones, a relative, a restrained man with a car. */
export const ANNA = {
  reference: 'SE-2026-0417',
  person: 'Anna Lindqvist',
  phone: '+46 70 123 45 67',
  address: 'Drottninggatan 71, 111 36 Stockholm',
  lat: 59.3366,
  lon: 18.0612,
  region: 'Stockholm',
  risk: 'high',
  plan: 'Send a patrol at once. Call Anna; if no answer, call her sister.',
  relatives: [{ name: 'Karin Lindqvist', relation: 'sister', phone: '+46 70 765 43 21' }],
  restrained: 'Mikael Berg',
  description: 'about 185 cm, short dark hair, grey hooded jacket',
  vehicle: 'black Volvo V70, ABC 123',
  deviceId: 'alarm-0417',
  extraZones: [{
    name: 'Workplace',
    geometry: { type: 'Polygon', coordinates: [[[18.0700, 59.3400], [18.0760, 59.3400], [18.0760, 59.3425], [18.0700, 59.3425], [18.0700, 59.3400]]] },
  }],
};
